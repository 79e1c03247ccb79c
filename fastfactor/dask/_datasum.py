"""``DataSum``: an objective that is a sum over row partitions of Dask arrays.

What is reduced is the gradient itself: each worker adds ``fg(x, *blocks)`` over its
partitions (in float64), the client adds the workers' sums in the placement's order.
Statistics of a summed gradient (Adafactor's row and column means of ``g²``) are not
sums of per-partition statistics, so nothing of the optimizer runs on the workers.
"""

import numpy as np

from .._inputs import as_scalar
from ._placement import Partitions, check_arrays, get_client, ordered_sum

#: Default seconds one attempt of an evaluation may take before it is retried.
TIMEOUT = 300.0
#: Default attempts after the first.
RETRIES = 3


def check_run_settings(timeout, retries):
    """``timeout`` (positive or None) and ``retries`` (int >= 0), checked."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(
            timeout, (int, float)) or not timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got "
                         f"{timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")


def _sum_on_worker(x, parts, fg, args):
    """The worker's task: ``(sum of f, sum of g in float64, g's dtype)`` over ``parts``."""
    f, g, dtype = 0.0, None, None
    for index, blocks in parts:
        out = fg(x, *blocks, *args)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"fg must return (f, g), the value and the gradient on a "
                            f"partition; on partition {index} it returned "
                            f"{type(out).__name__}")
        fi, gi = as_scalar(out[0]), np.asarray(out[1])
        if gi.size != x.size:
            raise ValueError(f"fg's gradient on partition {index} has shape {gi.shape}; "
                             f"it must have x's shape {x.shape}")
        dtype = gi.dtype if gi.dtype.kind == "f" else x.dtype
        gi = gi.astype(np.float64).reshape(x.shape)
        f, g = f + fi, gi if g is None else g + gi
    return f, g, dtype


class DataSum:
    """``(f, g)``: the sum over the row partitions of Dask arrays of ``fg(x, *blocks)``.

    Each call broadcasts ``x`` to the workers and runs one task per worker, which adds
    ``fg(x, *blocks, *args)`` over the partitions that worker holds; the client adds
    the workers' sums in a fixed order (reproducible for a fixed placement). Only ``x``
    and ``(f, g)`` cross the network; the data stays where it is.

    Parameters
    ----------
    fg : callable
        ``fg(x, *blocks, *args) -> (f, g)``: the objective on one partition (``blocks``
        are read-only NumPy arrays, the same rows of each array: they are the
        cluster's copy of the data, so writing to one raises ValueError; copy a
        block to change it) and its gradient, of ``x``'s shape. Pickled to the
        workers (closures are fine); fastfactor must be installed there.
    *arrays : dask.array.Array
        The data, with the same row chunks (a partition is one row chunk of each
        array); chunked along the other axes, an array is rechunked to whole rows
        once, here.
    args : tuple, optional
        Extra arguments of ``fg``, after the blocks (sent with every evaluation).
    client : distributed.Client, optional
        Default: the current client (``distributed.Client.current()``).
    timeout : float or None, optional
        Seconds an evaluation may take before it is abandoned and retried
        (default 300; None: no limit). A lost worker is noticed sooner: the
        evaluation polls the scheduler while it waits.
    retries : int, optional
        Attempts after the first (default 3), each after the lost partitions are
        back (recomputed by Dask from the arrays' graphs) and the placement read
        again.

    Attributes
    ----------
    nfev : int
        Evaluations made (each evaluates ``fg`` once on every partition).
    placement : dict
        Worker address -> indices of the partitions it holds, in the order in which
        the workers' sums are added.
    rows : list of int
        Rows of each partition.
    closed : bool
        Whether :meth:`close` released the data.

    Raises
    ------
    ValueError
        No client exists (the message says how to create one); the arrays' rows or
        row chunks do not line up; an evaluation after :meth:`close`.
    TypeError
        Data that is not a Dask array, a non-callable ``fg``.
    EvaluationFailed
        By an evaluation: it did not complete in ``retries + 1`` attempts (workers
        lost, or ``timeout`` passed, each time), or the cluster has no workers left.
    Exception
        By an evaluation: an exception raised by ``fg`` on a worker, raised again on
        the client (a ``KeyboardInterrupt`` or ``SystemExit`` raised there becomes a
        ``RuntimeError`` naming it: it would stop the worker). A solver running the
        evaluation ends with it as with any error of its objective.

    See Also
    --------
    fastfactor.minimize : an objective for it: ``minimize(ds, x0, jac=True)``.
    fastfactor.dask.least_squares, fastfactor.dask.minimize_stochastic

    Notes
    -----
    The object is the objective of :func:`fastfactor.minimize`,
    :func:`scipy.optimize.minimize` with ``method=fastfactor.adafactor`` or SciPy's
    own methods (``jac=True``), and of anything else taking ``x -> (f, g)``;
    :meth:`fun` and :meth:`jac` give the two parts separately (one evaluation for
    both at the same ``x``). :meth:`close` (or a ``with`` block) releases the data on
    the cluster. Each worker sums in float64; ``g`` comes back in the dtype ``fg``
    returns it in.

    Examples
    --------
    A linear least-squares objective over a 10,000 × 5 array in 4 partitions, by
    SciPy's L-BFGS-B and by 100 Adafactor iterations, which match the same run on the
    gathered arrays:

    >>> import numpy as np, scipy.optimize as so, dask.array as da
    >>> from distributed import Client, LocalCluster
    >>> import fastfactor
    >>> from fastfactor.dask import DataSum
    >>> cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
    ...                        dashboard_address=":0")
    >>> client = Client(cluster)
    >>> A = da.random.default_rng(0).standard_normal((10_000, 5), chunks=(2500, 5))
    >>> b = A @ np.arange(1.0, 6.0)
    >>> def fg(x, A, b):
    ...     r = A @ x - b
    ...     return 0.5 * r @ r, A.T @ r
    >>> ds = DataSum(fg, A, b)
    >>> res = so.minimize(ds, np.zeros(5), jac=True, method="L-BFGS-B")
    >>> res.success, bool(np.allclose(res.x, [1, 2, 3, 4, 5], rtol=1e-5))
    (True, True)
    >>> opts = {"beta1": 0.9, "maxiter": 100}
    >>> res = fastfactor.minimize(ds, np.zeros(5), jac=True, options=opts)
    >>> An, bn = A.compute(), b.compute()
    >>> ref = fastfactor.minimize(lambda x: fg(x, An, bn), np.zeros(5), jac=True,
    ...                           options=opts)
    >>> res.nit, bool(np.allclose(res.x, ref.x, rtol=1e-12))
    (100, True)
    >>> ds.close(); client.close(); cluster.close()
    """

    def __init__(self, fg, *arrays, args=(), client=None, timeout=TIMEOUT, retries=RETRIES):
        if not callable(fg):
            raise TypeError(f"fg must be callable (x, *blocks, *args) -> (f, g), got {fg!r}")
        check_run_settings(timeout, retries)
        self.fg, self.args = fg, args if isinstance(args, tuple) else (args,)
        arrays = check_arrays(arrays)
        self.client = get_client(client)
        self.partitions = Partitions(arrays, self.client, timeout, retries)
        self.nfev = 0
        self._last = None  # (x, f, g) of the last evaluation, for fun and jac

    @property
    def placement(self):
        return dict(self.partitions.placement)

    @property
    def rows(self):
        return list(self.partitions.rows)

    def __call__(self, x):
        """``(f, g)`` at ``x`` (an array of any shape; ``g`` has its shape)."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"x must be an array of real numbers, got dtype {x.dtype}")
        if self.closed:
            raise ValueError("this DataSum is closed: close() released its data on the "
                             "cluster; create a new DataSum to evaluate again")
        sums = self.partitions.run(_sum_on_worker, x, self.fg, self.args)
        self.nfev += 1
        f = float(ordered_sum([s[0] for s in sums]))
        g = ordered_sum([s[1] for s in sums]).astype(sums[0][2], copy=False)
        self._last = (x.copy(), f, g)
        return f, g.copy()

    def _at(self, x):
        x = np.asarray(x)
        if self._last is None or not np.array_equal(self._last[0], x):
            self(x)
        return self._last

    def fun(self, x):
        """``f`` at ``x`` (with :meth:`jac` at the same ``x``: one evaluation)."""
        return self._at(x)[1]

    def jac(self, x):
        """``g`` at ``x`` (with :meth:`fun` at the same ``x``: one evaluation)."""
        return self._at(x)[2].copy()

    @property
    def closed(self):  # documented in the class's Attributes, as placement and rows
        return not self.partitions.parts

    def close(self):
        """Release the data on the cluster (the arrays themselves are untouched); a later
        evaluation raises ValueError. Closing twice does nothing."""
        self.partitions.release()
        self._last = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        name = getattr(self.fg, "__name__", "fg")
        if self.closed:
            return f"DataSum({name}, closed: {sum(self.rows)} rows released)"
        return (f"DataSum({name}, {len(self.partitions)} partitions of {sum(self.rows)} "
                f"rows on {len(self.placement)} workers)")
