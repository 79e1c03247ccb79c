"""``fastfactor.dask``: objectives, least squares and mini-batches over Dask arrays.

When the data outgrows one machine, the optimizer does not: its state is ``n + m``
numbers per ``n × m`` block and the iterate fits anywhere. So the optimizer stays on
the client and the evaluation goes to the data. Each evaluation broadcasts ``x`` and
runs one task per worker, which evaluates the user's function on the row partitions
that worker holds and returns their sum (``n`` numbers); the client adds the workers'
partial sums in a fixed order. No partition moves between workers during a solve.

- :class:`DataSum`: ``(f, g)``, the sum over partitions of ``fg(x, *blocks)``, for
  :func:`fastfactor.minimize`, :func:`scipy.optimize.minimize` and anything that takes
  an objective with its gradient;
- :func:`least_squares`: residuals and Jacobians on the workers, Adafactor then
  SciPy's ``trf`` on a problem reduced to ``n``-sized sums;
- :func:`minimize_stochastic`: mini-batches drawn on the worker that holds the rows;
- :class:`EvaluationFailed`: an evaluation that lost its workers ``retries + 1`` times;
  :data:`FINISH_MAX_N`: the most unknowns of a least-squares finish.

The modules: ``_placement`` (the partitions, where they live, one evaluation with
timeouts and retries), ``_datasum``, ``_lsq`` (least squares: the phases of
``fastfactor._lsq`` on a problem reduced to sums, and the reduced ``trf`` finish),
``_reduce`` (the per-worker sums of least squares) and ``_stochastic``. Needs
``pip install "fastfactor[dask]"``; ``import fastfactor`` does not import Dask.
"""

try:
    import dask.array  # noqa: F401
    import distributed  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastfactor.dask needs Dask with its array and distributed parts: "
        f'pip install "fastfactor[dask]" ({exc})') from exc

from ._datasum import DataSum
from ._lsq import FINISH_MAX_N, least_squares
from ._placement import EvaluationFailed
from ._stochastic import minimize_stochastic

__all__ = ["FINISH_MAX_N", "DataSum", "EvaluationFailed", "least_squares",
           "minimize_stochastic"]
