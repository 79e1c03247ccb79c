"""Adafactor's hyper-parameters: defaults, validation and the per-step schedules."""

import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np

LrType = None | float | Callable[[int], float]


class StepScalars(NamedTuple):
    """The scalars of one step, as every kernel receives them (one argument).

    Numba compiles (and caches on disk) a kernel taking this named tuple; a kernel reads
    the fields it needs by name, so a new kernel-side hyper-parameter is one more field
    here (filled in :meth:`Hyper.scalars`) and nothing in between.
    """

    beta2: float            # beta2_t = 1 - t**decay_rate
    rho: float              # the relative step rho_t
    eps1: float
    eps2: float
    clip_threshold: float
    beta1: float            # 0.0 without a first moment
    weight_decay: float
    scale_parameter: bool


@dataclass(frozen=True)
class Hyper:
    """Validated hyper-parameters of one optimizer (see ``Adafactor`` for their meaning)."""

    lr: LrType = None
    eps1: float = 1e-30
    eps2: float = 1e-3
    clip_threshold: float = 1.0
    decay_rate: float = -0.8
    beta1: float | None = None
    weight_decay: float = 0.0
    scale_parameter: bool = True
    warmup_init: bool = False
    min_dim_size_to_factor: int = 1

    def __post_init__(self):
        _check_lr(self.lr)
        _check_real("eps1", self.eps1, lo=0.0)
        _check_real("eps2", self.eps2, lo=0.0)
        _check_real("clip_threshold", self.clip_threshold, lo=0.0, lo_open=True)
        _check_real("decay_rate", self.decay_rate)
        if self.decay_rate >= 0:
            raise ValueError(
                "decay_rate must be negative (beta2_t = 1 - t**decay_rate), "
                f"got {self.decay_rate!r}; the default is -0.8")
        _check_real("weight_decay", self.weight_decay, lo=0.0)
        if self.beta1 is not None:
            _check_real("beta1", self.beta1, lo=0.0)
            if not self.beta1 < 1.0:
                raise ValueError(f"beta1 must be in [0, 1) or None, got {self.beta1!r}")
        for name in ("scale_parameter", "warmup_init"):
            if not isinstance(getattr(self, name), (bool, np.bool_, numbers.Integral)):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.warmup_init and self.lr is not None:
            raise ValueError(
                "warmup_init=True applies to the relative step only: pass lr=None "
                f"(got lr={self.lr!r})")
        k = self.min_dim_size_to_factor
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"min_dim_size_to_factor must be an integer >= 1, got {k!r}")

    def as_dict(self):
        return asdict(self)

    def rho(self, t):
        """The relative step size rho_t at step ``t`` (1-based)."""
        lr = self.lr
        if lr is None:
            if self.warmup_init:
                return min(1e-6 * t, 1.0 / math.sqrt(t))
            return min(1e-2, 1.0 / math.sqrt(t))
        if callable(lr):
            value = lr(t)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
                raise ValueError(f"the lr schedule returned {value!r} at step {t}; "
                                 "it must return a positive finite float")
            return float(value)
        return float(lr)

    def beta2(self, t):
        """The second-moment decay beta2_t = 1 - t**decay_rate (0 at t = 1)."""
        return 1.0 - t ** self.decay_rate

    def scalars(self, t):
        """The :class:`StepScalars` of step ``t`` (1-based)."""
        rest = self.__dict__.get("_constant_scalars")
        if rest is None:  # the fields after beta2 and rho do not change from step to step
            rest = (float(self.eps1), float(self.eps2), float(self.clip_threshold),
                    0.0 if self.beta1 is None else float(self.beta1),
                    float(self.weight_decay), bool(self.scale_parameter))
            object.__setattr__(self, "_constant_scalars", rest)
        return StepScalars(float(self.beta2(t)), float(self.rho(t)), *rest)

    def check_dtype(self, dtype):
        """ValueError unless every constant hyper-parameter is finite in ``dtype`` (the
        parameters' dtype, in which the kernels compute), and a positive ``eps1`` does
        not vanish there."""
        dt = np.dtype(dtype)
        info = np.finfo(dt)
        names = ["eps1", "eps2", "clip_threshold", "weight_decay"]
        if self.lr is not None and not callable(self.lr):
            names.append("lr")
        for name in names:
            value = float(getattr(self, name))
            if abs(value) > float(info.max):
                raise ValueError(f"{name}={value!r} overflows {dt} (largest {info.max:.4g}), "
                                 f"the parameters' dtype; give a smaller {name}")
        if self.eps1 > 0 and dt.type(self.eps1) == 0:
            raise ValueError(f"eps1={self.eps1!r} rounds to 0 in {dt}, the parameters' dtype "
                             f"(smallest positive {info.smallest_subnormal:.4g}); give a "
                             "larger eps1 (the default is 1e-30)")

    def factored(self, shape):
        """Whether a block of ``shape`` keeps a factored (row/column) second moment."""
        k = self.min_dim_size_to_factor
        return len(shape) >= 2 and shape[-2] >= k and shape[-1] >= k


def _check_lr(lr):
    if lr is None or callable(lr):
        return
    _check_real("lr", lr, lo=0.0, lo_open=True,
                hint="; pass None for the relative step, a positive float, "
                     "or a callable t -> rho_t")


def _check_real(name, value, lo=None, lo_open=False, hint=""):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}{hint}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}{hint}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        bound = f"> {lo}" if lo_open else f">= {lo}"
        raise ValueError(f"{name} must be {bound}, got {value!r}{hint}")


HYPER_NAMES = tuple(f.name for f in fields(Hyper))


class InverseSqrt:
    """The schedule ``rho_t = c / sqrt(t)`` as a callable ``lr`` whose constant compiled
    loops can read (``fastfactor._compiled``), where a Python function would keep the
    run in the Python loop; ``t`` is the 1-based step."""

    def __init__(self, c):
        self.c = float(c)

    def __call__(self, t):
        return self.c / math.sqrt(t)

    def __repr__(self):
        return f"<rho_t = {self.c!r} / sqrt(t)>"


def make_hyper(kwargs, where):
    """``Hyper(**kwargs)``, with unknown names refused as Python refuses a keyword."""
    unknown = sorted(set(kwargs) - set(HYPER_NAMES))
    if unknown:
        raise TypeError(f"{where} got an unexpected keyword argument {unknown[0]!r}; the "
                        f"hyper-parameters are {', '.join(HYPER_NAMES)}")
    return Hyper(**kwargs)


def signature_with_hyper(func):
    """``func``'s signature with ``**hyper`` spelled out as ``Hyper``'s fields and
    defaults (what ``help`` and ``inspect.signature`` show)."""
    sig = inspect.signature(func)
    params = [p for p in sig.parameters.values()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
               for f in fields(Hyper)]
    return sig.replace(parameters=params)
