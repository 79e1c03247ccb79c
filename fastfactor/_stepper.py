"""``Adafactor``: the stateful stepper."""

import threading
from typing import NamedTuple

import numpy as np

from ._backends import get_backend
from ._backends._protocol import FactoredState, UnfactoredState
from ._blocks import block_size, kernel_shape, normalize_shapes
from ._checkpoint import MAX_T, StateIO
from ._hyper import StepScalars, make_hyper, signature_with_hyper
from ._interrupts import held_interrupt


class Adafactor(StateIO):
    """Adafactor optimizer state for a fixed list of parameter blocks.

    Each call to :meth:`step` applies one Adafactor update (Shazeer & Stern 2018) to
    every block, in place. Blocks with ``ndim >= 2`` keep a second moment factored
    over their last two axes (leading axes are a batch); vectors keep a full one.

    Parameters
    ----------
    shapes : int, tuple of int, or sequence of those
        The shape of the one block, or the shapes of several blocks (a list of
        tuples: ``[(n, m), (m,)]``).
    lr : None, float or callable, optional
        None (default): the relative step ``rho_t = min(1e-2, 1/sqrt(t))``. A positive
        float: a fixed ``rho``. A callable ``t -> rho_t``: a schedule (``t`` starts at 1).
    eps1 : float, optional
        Added to ``g**2`` in the second moment (default 1e-30). With ``eps1=0``, an
        entry whose second moment is exactly zero gets a zero update.
    eps2 : float, optional
        Lower bound of the parameter scale ``RMS(x)`` (default 1e-3).
    clip_threshold : float, optional
        Update clipping threshold ``d`` (default 1.0).
    decay_rate : float, optional
        ``beta2_t = 1 - t**decay_rate`` (default -0.8); must be negative.
    beta1 : float or None, optional
        First-moment coefficient in ``[0, 1)``; None (default) keeps no first moment.
    weight_decay : float, optional
        Decoupled weight decay, scaled by the step size alpha_t (default 0).
    scale_parameter : bool, optional
        Scale the step by ``max(eps2, RMS(x))`` (default True).
    warmup_init : bool, optional
        Relative step ``min(1e-6 t, 1/sqrt(t))`` instead (default False; needs lr=None).
    min_dim_size_to_factor : int, optional
        A block with ``ndim >= 2`` is factored only when both of its last two axes
        are at least this long (default 1: always).
    device : {"cpu", "cuda"}, optional
        Where the steps run (default "cpu"). With "cuda", parameters are device
        arrays (Numba device arrays, or objects with ``__cuda_array_interface__``
        such as CuPy arrays and PyTorch CUDA tensors) updated in place on the GPU,
        gradients may be on the host or the device, and a step never waits for the
        GPU, so a gradient holding a NaN or inf is not refused there (it propagates);
        ``state_dict()`` returns NumPy arrays. See the GPU page of the documentation.

    Notes
    -----
    State is allocated at the first step, in the parameters' dtype (float32 or
    float64). A factored ``(..., n, m)`` block keeps ``(..., n)`` + ``(..., m)``
    numbers, plus a full first moment only when ``beta1`` is set.

    ``shapes``, ``factored``, ``hyper``, ``device``, ``t`` and ``dtype`` are read-only:
    the state was sized from them. Parameters of different blocks must not share
    memory, nor may one array overlap itself (strides that reach one element twice, as
    ``np.broadcast_to`` or ``as_strided`` make): such a step is refused with
    ``ValueError``. A gradient may share memory with the parameters (it is copied
    first). Threads may share one optimizer; their steps are taken one at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from fastfactor import Adafactor
    >>> W, b = np.ones((4, 3)), np.zeros(3)
    >>> opt = Adafactor([(4, 3), (3,)], lr=0.1, scale_parameter=False)
    >>> _ = opt.step([W, b], [np.ones((4, 3)), -np.ones(3)])
    >>> W[0], b
    (array([0.9, 0.9, 0.9]), array([0.1, 0.1, 0.1]))
    """

    def __init__(self, shapes, *misplaced, device="cpu", **hyper):
        if callable(shapes) or {"args", "jac", "bounds", "callback"} & set(hyper):
            raise TypeError(
                "Adafactor is the stepper (Adafactor(shapes, ...).step(params, grads)); as a "
                "scipy.optimize.minimize method, pass method=fastfactor.adafactor")
        if misplaced:
            raise TypeError(f"Adafactor takes the block shapes as one argument, e.g. "
                            f"Adafactor([{shapes!r}, {', '.join(map(repr, misplaced))}]); "
                            "hyper-parameters are keywords")
        shapes, self._single = normalize_shapes(shapes)
        self._shapes = tuple(shapes)
        self._hyper = make_hyper(hyper, "Adafactor()")
        self._device = device
        self._backend = get_backend(device)
        self._factored = tuple(self._hyper.factored(s) for s in shapes)
        # the shape each block takes in the kernels; None for an empty block
        self._kernel_shapes = [kernel_shape(s, f) if block_size(s) else None
                               for s, f in zip(shapes, self._factored, strict=True)]
        self._t = 0
        self._dtype = None
        self._state = None
        # one step at a time: threads sharing an optimizer must not interleave phases
        self._lock = threading.RLock()

    # Read-only: the state arrays were sized from these, and the kernels trust them.
    shapes = property(lambda self: list(self._shapes),
                      doc="The block shapes (a new list; set at construction).")
    factored = property(lambda self: list(self._factored),
                        doc="Whether each block keeps a factored second moment.")
    hyper = property(lambda self: self._hyper, doc="The hyper-parameters (a frozen Hyper).")
    device = property(lambda self: self._device, doc='"cpu" or "cuda".')
    backend = property(lambda self: self._backend, doc="The backend the steps run on.")
    t = property(lambda self: self._t, doc="The number of steps taken.")
    dtype = property(lambda self: self._dtype,
                     doc="The state's dtype (None before the first step).")

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self):
        shapes = self.shapes[0] if self._single else self.shapes
        return f"Adafactor({shapes!r}, t={self.t})"

    # --- state -----------------------------------------------------------------
    def _allocate(self, dtype):
        be = self.backend
        state = []
        for shape, factored in zip(self.shapes, self.factored, strict=True):
            ks = kernel_shape(shape, factored)
            mom = be.zeros(ks if self.hyper.beta1 is not None else (0,) * len(ks), dtype)
            if factored:
                state.append(FactoredState(be.zeros(ks[:2], dtype),
                                           be.zeros((ks[0], ks[2]), dtype), mom))
            else:
                state.append(UnfactoredState(be.zeros(ks, dtype), mom))
        self._dtype = np.dtype(dtype)
        self._state = state

    # --- stepping --------------------------------------------------------------
    def step(self, params, grads):
        """Apply one update to ``params`` in place, using ``grads``; returns ``params``.

        ``params`` and ``grads`` are one array each (when the optimizer was built
        from one shape) or lists (or tuples) matching ``shapes``, even of one block.
        Parameters must be writeable float32 or float64 arrays (any memory layout);
        gradients are converted to the parameters' dtype. A gradient is only read: one
        that shares memory with a parameter is copied before any block is updated.

        Raises
        ------
        ValueError
            If a shape does not match (or one array is given for several blocks), or
            if any gradient holds a NaN or inf, or values whose squares overflow the
            parameters' dtype (``|g|`` of order 1e19 in float32, 1e154 in float64;
            so does a float64 gradient beyond float32's range, for float32
            parameters): the step is then refused as a whole, and the
            parameters, the state and ``t`` are left exactly as they were (skip the
            batch, or lower the step size). Also when a parameter is read-only,
            shares memory with another or overlaps itself, and at the first step
            when a hyper-parameter overflows the parameters' dtype (or a positive
            ``eps1`` rounds to 0 there), naming it, and when ``t`` has reached
            ``2**63 - 1`` (the most a state holds). With ``device="cuda"`` such
            gradients are not refused: they propagate (see ``device``).
        TypeError
            If a parameter is not an array of the backend (NumPy on the CPU, a device
            array with ``device="cuda"``) in float32 or float64, or the parameters'
            dtypes differ (from each other or from the state).

        Notes
        -----
        A step is all or nothing: in the main thread, a Ctrl-C (``KeyboardInterrupt``)
        that arrives during a step is raised once every block has been updated and
        ``t`` advanced (unless the program installed a SIGINT handler of its own).
        """
        with self._lock:
            return self._step(params, grads)

    def _step(self, params, grads):
        ps, gs = self._per_block(params, "params"), self._per_block(grads, "grads")
        n = len(self._shapes)
        if len(ps) != n or len(gs) != n:
            hint = ("one array each" if self._single
                    else f"lists of {_arrays(n)}, one per block of shapes={self.shapes}")
            raise ValueError(f"expected {n} parameter and gradient arrays, got "
                             f"{len(ps)} and {len(gs)}; pass {hint}")
        be = self.backend
        arrays = []
        for p, shape in zip(ps, self._shapes, strict=True):
            # refused when sharing memory with an earlier block's parameters
            arrays.append(be.as_param(p, shape, arrays))
        dtype = arrays[0].dtype
        if any(p.dtype != dtype for p in arrays):
            raise TypeError("all parameters of one optimizer must share one dtype, got "
                            + ", ".join(sorted({str(p.dtype) for p in arrays})))
        if self.dtype is not None and dtype != self.dtype:
            raise TypeError(f"the optimizer state is {self.dtype}, the parameters are {dtype}")
        # a gradient overlapping any parameter is copied: blocks are updated one by one
        gs = [be.as_grad(g, shape, dtype, arrays)
              for g, shape in zip(gs, self._shapes, strict=True)]
        with held_interrupt():  # Ctrl-C waits until every block has taken the step
            bad = self._apply(arrays, arrays, gs)
        if bad is not None:
            raise ValueError(
                f"the gradient of block {bad} (shape {self.shapes[bad]}) contains NaN or inf "
                "(or values whose squares overflow); nothing was updated (the parameters "
                "and the optimizer state are unchanged)")
        return params

    def _per_block(self, arrays, name):
        """``arrays`` (``params`` or ``grads``) as a list, one per block."""
        if isinstance(arrays, (list, tuple)):
            return list(arrays)
        if self._single:
            return [arrays]
        # iterating one array would take its rows as the blocks
        n = len(self._shapes)
        what = (f"one array of shape {tuple(arrays.shape)}" if hasattr(arrays, "shape")
                else f"a {type(arrays).__name__}")
        raise ValueError(f"{name} must be a list (or tuple) of arrays, one per block, got "
                         f"{what}; pass lists of {_arrays(n)} (params and grads), one per "
                         f"block of shapes={self.shapes}")

    def _apply(self, xs, outs, gs):
        """One step from ``xs`` into ``outs`` (which may be ``xs``) with gradients ``gs``.

        The arrays are already checked: block shapes, one float dtype, gradients in it.
        Returns None once applied, or the index of the first block whose gradient is
        not finite (NaN, inf, or squares that overflow): then nothing has changed (on a
        backend that refuses non-finite gradients; elsewhere they propagate).
        """
        prepared, refused = self._prepare(xs, gs)
        if prepared is None:
            return refused
        self._commit(prepared, xs, outs)
        return None

    def _prepare(self, xs, gs):
        """Phase 1 of the next step at ``xs`` with gradients ``gs``: reads every gradient
        (once) and changes nothing. Returns ``(_Prepared, None)``, or ``(None, i)`` when
        block ``i`` refuses its gradient. ``_Prepared.glow``, from the same pass on a
        backend with the two-phase step (else None), is a lower bound of ``max|g|`` over
        all blocks, up to rounding (``RMS(g)`` of a factored block, ``max|g|`` of a flat
        one).
        """
        dtype = xs[0].dtype
        fresh = self._state is None
        if fresh:
            self._hyper.check_dtype(dtype)
        t = self.t + 1
        if t > MAX_T:
            raise ValueError(f"t = {self.t} steps is the most a state holds (an int64, as "
                             "save_state writes it); nothing was updated")
        s = self.hyper.scalars(t)
        if not s.rho <= float(np.finfo(dtype).max):
            raise ValueError(f"the lr schedule returned {s.rho!r} at step {t}, which overflows "
                             f"{dtype}, the parameters' dtype; nothing was updated")
        if fresh:
            self._allocate(dtype)
        be = self.backend
        two_phase = be.refuses_nonfinite
        blocks = []
        glow = 0.0 if two_phase else None
        for i, (ks, x, g, st, factored) in enumerate(zip(
                self._kernel_shapes, xs, gs, self._state, self.factored, strict=True)):
            if ks is None:  # an empty block
                continue
            xk = be.reshaped_view(x, ks)
            copied = xk is None
            if copied:  # stepped in a contiguous copy, written back at the end
                xk = be.contiguous(x, ks)
            gk = g.reshape(ks)
            pending = None
            if two_phase:
                stats = be.factored_stats if factored else be.unfactored_stats
                pending, low = stats(xk, gk, st, s)
                if pending is None:
                    if fresh:  # a refused first step leaves no state behind either
                        self._state = self._dtype = None
                    return None, i
                glow = max(glow, low)
            blocks.append((i, x, xk, gk, copied, st, factored, pending))
        return _Prepared(t, s, blocks, glow), None

    def _commit(self, prepared, xs, outs):
        """Phase 2: the step prepared at ``xs``, written into ``outs`` (may be ``xs``)."""
        if prepared.t != self._t + 1:
            raise RuntimeError("a step was taken between the two phases of another")
        be = self.backend
        s = prepared.s
        self._t = prepared.t
        for i, x, xk, gk, copied, st, factored, pending in prepared.blocks:
            out = outs[i]
            if copied or out is x:
                work = xk
            else:
                work = be.reshaped_view(out, xk.shape)
                if work is None:  # out has no view in the kernel's shape
                    work = be.contiguous(x, xk.shape)
                    xk = work
            if pending is None:
                step = be.factored_step if factored else be.unfactored_step
                step(xk, work, gk, st, s)
            else:
                apply = be.factored_apply if factored else be.unfactored_apply
                apply(xk, work, gk, st, pending, s)
            if work is xk and (copied or out is not x):
                be.copy_into(out, work)


def _arrays(n):
    return f"{n} array" if n == 1 else f"{n} arrays"


class _Prepared(NamedTuple):
    """A step whose first phase is done (see ``Adafactor._prepare``)."""

    t: int
    s: StepScalars
    blocks: list
    glow: float | None


Adafactor.__init__.__signature__ = signature_with_hyper(Adafactor.__init__)
