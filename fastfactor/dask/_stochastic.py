"""``fastfactor.dask.minimize_stochastic``: mini-batches drawn where the rows live.

Each update is one synchronous evaluation over all workers: the client splits the
batch's ``batch_size`` rows among the partitions in proportion to their rows
(stratified: the remainder rows go to partitions drawn with probabilities of their
fractional shares), and each worker draws its partitions' rows without replacement
from a generator seeded by ``(seed, update, partition)``. The draws depend on the
seed alone, not on where the partitions are, and each partition's term comes back
to be added in the partitions' order (``P × n`` numbers per update, where ``DataSum``
sends ``workers × n``), so a seeded run gives the same iterates on any placement, a
retried evaluation included. The loop is :func:`fastfactor.minimize_stochastic`,
unchanged, with a sampler that names the update.
"""

import math
import numbers

import numpy as np

from .._options import as_options, positive_int
from .._stochastic import minimize_stochastic as _local_minimize_stochastic
from ._datasum import RETRIES, TIMEOUT, check_run_settings
from ._placement import Partitions, check_arrays, get_client, ordered_sum, read_only


def allocate(rows, batch_size, rng):
    """Rows of the batch per partition: ``floor(B m_p / m)`` each, the remaining rows
    to partitions drawn (without replacement) with probabilities of the fractions."""
    rows = np.asarray(rows, dtype=float)
    share = batch_size * rows / rows.sum()
    counts = np.floor(share).astype(int)
    rest = batch_size - int(counts.sum())
    if rest > 0:
        frac = share - counts
        pick = rng.choice(rows.size, size=rest, replace=False, p=frac / frac.sum())
        counts[pick] += 1
    return np.minimum(counts, rows.astype(int))


def _batch_task(x, parts, fun, jac, args, counts, entropy, t, total):
    """The worker's task: ``[(index, f, g in float64, g's dtype)]``, the row-weighted
    terms of its partitions' pieces of the batch of update ``t``."""
    out = []
    for index, blocks in parts:
        k = int(counts[index])
        if k == 0:
            continue
        rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(t, index)))
        rows = np.sort(rng.choice(len(blocks[0]), size=k, replace=False))
        batch = read_only([b[rows] for b in blocks])  # as the blocks of DataSum
        if jac is True:
            fi, gi = fun(x, *batch, *args)
        else:
            fi, gi = fun(x, *batch, *args), jac(x, *batch, *args)
        gi = np.asarray(gi)
        if gi.size != x.size:
            raise ValueError(f"the gradient on partition {index} has shape {gi.shape}; it "
                             f"must have x's shape {x.shape}")
        dtype = gi.dtype if gi.dtype.kind == "f" else x.dtype
        w = k / total
        out.append((index, w * float(fi), w * gi.astype(np.float64).reshape(x.shape), dtype))
    return out


class _Batches:
    """The sampler handed to the local loop: the update's index, one per draw."""

    def __init__(self):
        self.t = 0

    def __call__(self, rng):
        self.t += 1
        return self.t


def _seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be None or an integer >= 0 (the draws on the workers "
                        f"are seeded from it), got {type(seed).__name__} {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be None or an integer >= 0 (the draws on the workers "
                         f"are seeded from it), got {seed!r}")
    return np.random.SeedSequence(seed).entropy


def _batch_size(batch_size):
    """``batch_size`` checked: TypeError for what is not an integer, ValueError below 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be an integer >= 1 (rows per update), got "
                        f"{type(batch_size).__name__} {batch_size!r}")
    return positive_int("batch_size", batch_size)


def minimize_stochastic(fun, x0, *arrays, batch_size, args=(), jac=True, callback=None,
                        options=None, client=None, timeout=TIMEOUT, retries=RETRIES):
    """Minimize a mean over the rows of Dask arrays, one mini-batch per update.

    Each update draws ``batch_size`` rows, spread over the partitions in proportion
    to their rows and drawn on the workers that hold them, evaluates ``fun`` on each
    partition's piece there, and applies one Adafactor update on the client to the
    row-weighted mean of the pieces' values and gradients, that is, to ``fun`` on the
    whole batch. Updates are synchronous: all workers take part in each.

    Parameters
    ----------
    fun : callable
        ``fun(x, *batch, *args) -> (f, g)`` (with ``jac=True``, the default) or ``-> f``
        (with a callable ``jac``): the objective on a batch of rows as a mean over
        them, as for :func:`fastfactor.minimize_stochastic`; ``batch`` are the
        batch's rows of each array (read-only NumPy arrays).
    x0 : array_like
        Starting point, any shape; float32 stays float32. Not modified.
    *arrays : dask.array.Array
        The data, with the same row chunks (see :class:`DataSum`).
    batch_size : int
        Rows per update, at most the number of rows.
    args : tuple, optional
        Extra arguments of ``fun`` and ``jac``, after the batch.
    jac : True or callable, optional
        True when ``fun`` returns ``(f, g)``; else ``jac(x, *batch, *args) -> g``.
    callback : callable, optional
        As in :func:`fastfactor.minimize_stochastic`.
    options : dict, optional
        The options of :func:`fastfactor.minimize_stochastic` (``maxiter``,
        ``epochs``, ``eval_fun``, ``average``, hyper-parameters, ...). ``seed`` (None
        or an int) seeds the draws; ``batches_per_epoch`` defaults to
        ``ceil(rows / batch_size)``.
    client : distributed.Client, optional
        Default: the current client.
    timeout, retries : float or None, int, optional
        Per update, as in :class:`DataSum` (defaults 300 s and 3).

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        The result of :func:`fastfactor.minimize_stochastic`.

    Raises
    ------
    ValueError
        No client; arrays whose rows or row chunks do not line up; ``batch_size``
        below 1 or above the number of rows; a negative ``seed``.
    TypeError
        Data that is not a Dask array; ``jac`` neither True nor callable;
        ``batch_size`` that is not an integer; a ``seed`` that is not None or an
        integer.
    EvaluationFailed
        An update did not complete in ``retries + 1`` attempts (lost workers, or
        ``timeout``); the run's result is its ``optimize_result`` attribute.
    Exception
        An exception raised by ``fun`` or ``jac`` on a worker, raised on the client
        as for :func:`fastfactor.minimize_stochastic` (a ``KeyboardInterrupt`` or
        ``SystemExit`` there becomes a ``RuntimeError`` naming it).

    See Also
    --------
    fastfactor.minimize_stochastic : the loop, for batches in memory.
    DataSum : a full objective for ``eval_fun``: ``options={"eval_fun": ds.fun}``.

    Notes
    -----
    A partition's rows of update ``t`` come from
    ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(t, partition)))``, and
    how many of them from a generator seeded by ``(seed, t)`` on the client; the
    partitions' terms are added in the partitions' order. A seeded run gives the same
    iterates, bit for bit, on any placement and after a lost worker, for the same row
    chunks: the draws are made per partition, so other row chunks (other partitions)
    draw other batches and give other iterates, as another seed would. ``batch`` is
    read-only (as the blocks of :class:`DataSum`).
    """
    if not (jac is True or callable(jac)):
        raise TypeError(f"jac must be True (fun returns (f, g)) or a callable gradient "
                        f"jac(x, *batch, *args); finite differences are not offered on a "
                        f"cluster, got {jac!r}")
    check_run_settings(timeout, retries)
    batch_size = _batch_size(batch_size)
    options = dict(as_options(options))
    entropy = _seed(options.get("seed"))
    args = args if isinstance(args, tuple) else (args,)
    arrays = check_arrays(arrays)
    rows = list(arrays[0].chunks[0])
    total = sum(rows)
    if batch_size > total:
        raise ValueError(f"batch_size={batch_size} is above the {total} rows of the data")
    options.setdefault("batches_per_epoch", math.ceil(total / batch_size))
    partitions = Partitions(arrays, get_client(client), timeout, retries)

    def evaluate(x, t):
        rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(t,)))
        counts = allocate(rows, batch_size, rng)
        out = partitions.run(_batch_task, x, fun, jac, args, counts, entropy, t,
                             int(counts.sum()))
        # added in the partitions' order, not the workers': the same sums on any placement
        terms = sorted((term for worker in out for term in worker), key=lambda v: v[0])
        g = ordered_sum([v[2] for v in terms])
        return float(ordered_sum([v[1] for v in terms])), g.astype(terms[0][3])

    try:
        return _local_minimize_stochastic(evaluate, x0, _Batches(), jac=True,
                                          callback=callback, options=options)
    finally:
        partitions.release()
