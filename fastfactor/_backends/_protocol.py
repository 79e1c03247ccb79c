"""The backend contract: everything the stepper and the driver call on a device.

A backend is an object with the members of :class:`Backend`; ``get_backend(device)``
returns the one instance per device. Arrays are the backend's own (NumPy arrays on the
CPU, Numba device arrays on CUDA). The per-block optimizer state travels as one named
tuple (:class:`FactoredState` or :class:`UnfactoredState`) and the per-step scalars as
one ``fastfactor._hyper.StepScalars``, in that argument order everywhere.
"""

from typing import Any, NamedTuple, Protocol


class FactoredState(NamedTuple):
    """State of a factored ``(B, n, m)`` block: row statistic ``R`` ``(B, n)``, column
    statistic ``C`` ``(B, m)`` and first moment ``m`` (``(B, n, m)``, or empty without
    ``beta1``)."""

    row: Any
    col: Any
    m: Any


class UnfactoredState(NamedTuple):
    """State of a flat block of ``size`` elements: second moment ``v`` ``(size,)`` and
    first moment ``m`` (``(size,)``, or empty without ``beta1``)."""

    v: Any
    m: Any


class Backend(Protocol):
    """What the stepper (``fastfactor.Adafactor``) and the driver call on a backend."""

    #: The device name ``get_backend`` takes ("cpu", "cuda").
    name: str
    #: True when the backend has the two-phase step (``*_stats`` then ``*_apply``),
    #: which refuses a gradient holding a NaN or inf before anything changes. False:
    #: only the one-call ``*_step`` exists, and a NaN or inf propagates.
    refuses_nonfinite: bool

    # --- arrays ------------------------------------------------------------------------
    def zeros(self, shape, dtype): ...
    def empty_like(self, a): ...
    def to_host(self, a):
        """A NumPy copy of ``a``."""
    def as_param(self, p, shape, others=()):
        """``p`` checked as a parameter block of ``shape`` (updated in place): refused
        when it may overlap itself or shares memory with a parameter in ``others``."""
    def as_grad(self, g, shape, dtype, params=()):
        """``g`` checked against ``shape``, as an array of this backend in ``dtype``; a
        copy when it may share memory with a parameter in ``params``."""
    def reshaped_view(self, a, shape):
        """``a`` in ``shape`` without a copy, or None when that needs a copy."""
    def contiguous(self, a, shape):
        """A contiguous copy of ``a`` in ``shape``."""
    def copy_into(self, dst, src):
        """``dst[...] = src`` (same number of elements)."""

    # --- reductions and projection -------------------------------------------------------
    def max_abs(self, g):
        """``max |g|`` as a float: NaN or inf when ``g`` holds one."""
    def max_abs_projected(self, x, g, lb, ub):
        """``max |clip(x - g, lb, ub) - x|``: NaN or inf when ``g`` holds one."""
    def clip(self, x, lb, ub):
        """Project the flat ``x`` onto ``[lb, ub]`` in place."""

    # --- the step: ``out`` is ``x`` (in place) or another array of x's shape -------------
    def factored_step(self, x, out, g, state, s):
        """One step of a ``(B, n, m)`` block; False when refused (nothing changed)."""
    def unfactored_step(self, x, out, g, state, s):
        """One step of a flat block; False when refused (nothing changed)."""
    def factored_stats(self, x, g, state, s):
        """Pending statistics, or None when ``g`` is not finite (two-phase backends)."""
    def factored_apply(self, x, out, g, state, pending, s):
        """Store ``pending`` and update ``out`` (two-phase backends)."""
    def unfactored_stats(self, x, g, state, s): ...
    def unfactored_apply(self, x, out, g, state, pending, s): ...

    # --- what the driver needs: the iterate and the objective on this device -------------
    def as_x0(self, x0):
        """x0 as a new float array of this backend (NumPy rules: float32 stays float32)."""
    def box(self, lb, ub):
        """Host bounds ``(lb, ub)`` (flat float64) as arrays this backend's reductions take."""
    def objective(self, fun, jac, args, shape, dtype, x0, fd):
        """The evaluation ``x -> (f, g, None)`` of a flat iterate of this backend; ``fd``
        (a ``fastfactor._finite_diff.Settings``) says how to differentiate ``fun``."""
    def exporter(self, x0, shape, owned=False):
        """``a -> copy of a in shape``, of x0's kind (NumPy for a NumPy x0). ``owned``: the
        arrays are the run's own, handed over at its end (a copy only where x0's kind
        needs one)."""
    def compile_notice(self, enabled):
        """A context manager: while open (and ``enabled``), a line is printed just before
        a kernel compiles (runs with ``disp`` / ``verbose``); a no-op where compiling is
        not worth a line."""


#: The members every backend has (the two-phase ones only where ``refuses_nonfinite``).
ALWAYS = ("name", "refuses_nonfinite", "zeros", "empty_like", "to_host", "as_param",
          "as_grad", "reshaped_view", "contiguous", "copy_into", "max_abs",
          "max_abs_projected", "clip", "factored_step", "unfactored_step", "as_x0", "box",
          "objective", "exporter", "compile_notice")
TWO_PHASE = ("factored_stats", "factored_apply", "unfactored_stats", "unfactored_apply")


def backend_instance(name):
    """The backend instance named ``name`` (what a pickled backend unpickles to)."""
    from . import get_backend
    return get_backend(name)
