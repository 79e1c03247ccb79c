"""fastfactor: Adafactor for the SciPy world.

Three ways to call it:

- ``scipy.optimize.minimize(fun, x0, method=fastfactor.adafactor, ...)``
- ``fastfactor.minimize(fun, X0, ...)`` for x0 of any shape
- ``fastfactor.Adafactor(shapes, ...)``, a stepper for hand-written loops

and front ends: ``fastfactor.least_squares`` and ``fastfactor.curve_fit`` (nonlinear
least squares in SciPy's call form, robust losses, a trust-region finish) and
``fastfactor.minimize_stochastic`` (mini-batches of data too large for every step).

Nothing is compiled at import: each Numba kernel compiles on its first call (and is
cached on disk for the next process).
"""

from ._lsq import curve_fit, least_squares
from ._minimize import adafactor, minimize
from ._stepper import Adafactor
from ._stochastic import minibatches, minimize_stochastic

__all__ = ["Adafactor", "adafactor", "curve_fit", "least_squares", "minibatches", "minimize",
           "minimize_stochastic"]
__version__ = "0.1.0"
