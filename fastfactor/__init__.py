"""fastfactor: Adafactor for the SciPy world.

Three ways to call it:

- ``scipy.optimize.minimize(fun, x0, method=fastfactor.adafactor, ...)``
- ``fastfactor.minimize(fun, X0, ...)`` for x0 of any shape
- ``fastfactor.Adafactor(shapes, ...)``, a stepper for hand-written loops

Nothing is compiled at import: each Numba kernel compiles on its first call (and is
cached on disk for the next process).
"""

from ._minimize import adafactor, minimize
from ._stepper import Adafactor

__all__ = ["Adafactor", "adafactor", "minimize"]
__version__ = "0.1.0"
