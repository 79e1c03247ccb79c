"""The CPU backend: NumPy arrays, the Numba kernels of ``_kernels`` (driven by ``_step``),
and the objective of a host iterate."""

from ..._inputs import as_x0
from ..._objective import Objective
from .. import _protocol
from . import _step
from ._notice import announce_compilation


class CpuBackend:
    """The backend for ``device="cpu"`` (see :class:`fastfactor._backends._protocol.Backend`)."""

    name = "cpu"
    refuses_nonfinite = True

    zeros = staticmethod(_step.zeros)
    empty_like = staticmethod(_step.empty_like)
    to_host = staticmethod(_step.to_host)
    as_param = staticmethod(_step.as_param)
    as_grad = staticmethod(_step.as_grad)
    reshaped_view = staticmethod(_step.reshaped_view)
    contiguous = staticmethod(_step.contiguous)
    copy_into = staticmethod(_step.copy_into)
    max_abs = staticmethod(_step.max_abs)
    max_abs_projected = staticmethod(_step.max_abs_projected)
    clip = staticmethod(_step.clip)
    factored_step = staticmethod(_step.factored_step)
    unfactored_step = staticmethod(_step.unfactored_step)
    factored_stats = staticmethod(_step.factored_stats)
    factored_apply = staticmethod(_step.factored_apply)
    unfactored_stats = staticmethod(_step.unfactored_stats)
    unfactored_apply = staticmethod(_step.unfactored_apply)
    as_x0 = staticmethod(as_x0)
    compile_notice = staticmethod(announce_compilation)

    @staticmethod
    def box(lb, ub):
        return lb, ub

    @staticmethod
    def objective(fun, jac, args, shape, dtype, x0, fd):
        return Objective(fun, jac, args, shape, dtype, fd)

    @staticmethod
    def exporter(x0, shape, owned=False):
        if owned:  # the run's own buffer, handed over: no copy
            return lambda a: a.reshape(shape)
        return lambda a: a.reshape(shape).copy()

    def __reduce__(self):  # pickles and deep-copies as the one instance
        return (_protocol.backend_instance, (self.name,))

    def __repr__(self):
        return "<fastfactor CPU backend>"


BACKEND = CpuBackend()
