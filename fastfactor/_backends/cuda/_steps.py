"""The steps and reductions: host code that sizes the grids and launches the kernels.

A factored step of a ``(B, n, m)`` block is six kernel launches and no host
synchronisation; it reads ``g`` three times and ``x`` twice and writes ``x`` once:

1. ``stats``: row and column sums of ``g**2`` in one read of ``g``. A block owns a
   tile of ``LANES * J`` columns and a strip of rows; the threads of a warp take
   consecutive columns (coalesced loads), keep their column sums in registers and
   hand per-lane row sums to shared memory, where one thread per row adds them up.
   Each block writes its row sums (one per row and column tile) and its column sums
   (one per column and row strip), so no atomics are used and the result is
   deterministic.
2. ``rowcol``: R and C from those partial sums, ``b_j = 1/sqrt(C_j)``, and partial
   sums of R.
3. ``rowfactor``: ``mean(R)`` and ``a_i = sqrt(mean(R)/R_i)``.
4. ``usum``: partial sums of ``U_ij**2 = (g_ij a_i b_j)**2`` and of ``x**2``.
5. ``coefficients``: one block adds the partial sums up and computes the clipping
   and step-size scalars on the device.
6. ``update``: the element-wise update (and first moment), in place when ``out`` is ``x``.

An unfactored block is three launches (second moment with the sums, coefficients,
update). Every sum is accumulated in float64, in a fixed order; element-wise
arithmetic is done in the parameter's dtype, as in ``cpu.py`` (the GPU compiler may
fuse a multiply and an add into one FMA, a last-bit difference). The temporaries
(partial sums, factors) are O(n + m) for a given device, never of the order of
``n * m``; they are cached per shape, CUDA context and host thread.
"""

import numpy as np

from . import _launch
from ._arrays import _flat, _on_device, _view
from ._kernels import (
    _clip_kernel,
    _coefficients,
    _kernels,
    _max_abs_part,
    _max_final,
    _max_proj_part,
)
from ._launch import _blocks_target, _cdiv, _factored_plan, _tpb
from ._workspace import _device, _workspace


def factored_step(x, out, g, state, s):
    """One factored step of a ``(B, n, m)`` block of device arrays; ``out`` may be ``x``.

    ``state`` is a ``FactoredState``: ``row`` ``(B, n)`` and ``col`` ``(B, m)`` are
    updated in place, and so is ``m`` (the first moment, ``(B, n, m)``) unless it is
    empty (no ``beta1``). ``s`` is a ``StepScalars``, passed to the kernels as it is.
    Asynchronous: no host synchronisation. Returns True (a step is never refused here).
    """
    r, c, mom = state
    nb, n, m = g.shape
    dt = np.dtype(r.dtype)
    ks = _kernels(dt)
    lanes, warps = _launch.LANES, _launch.WARPS  # read per launch: tests change them
    tpb = lanes * warps
    spans, strips, rps, chunks, rchunks, nch, ublocks = _factored_plan(nb, n, m)

    def make():
        return dict(rowpart=_device((spans, nb, n), np.float64),
                    colpart=_device((strips, nb, m), np.float64),
                    rpart=_device((nb, chunks), np.float64),
                    rowf=_device((nb, n), dt), colf=_device((nb, m), dt),
                    upart=_device(ublocks, np.float64), xpart=_device(ublocks, np.float64),
                    coef=_device(4, dt))

    w = _workspace(("factored", nb, n, m, dt.str, lanes, warps, ublocks, strips), make)
    ks["stats"][spans * strips * nb, (lanes, warps)](g, w["rowpart"], w["colpart"], spans,
                                                      strips, rps)
    ks["rowcol"][nb * chunks, tpb](r, c, w["colf"], w["rowpart"], w["colpart"], w["rpart"], s)
    ks["rowfactor"][nb * rchunks, tpb](r, w["rowf"], w["rpart"], rchunks)
    ks["usum"][ublocks, (lanes, warps)](g, x, w["rowf"], w["colf"], w["upart"], w["xpart"],
                                        nch, s)
    _coefficients[1, tpb](w["upart"], w["xpart"], w["coef"], nb * n * m, s)
    ks["update"][ublocks, (lanes, warps)](x, out, g, w["rowf"], w["colf"], mom, w["coef"],
                                          nch, mom.size > 0)
    return True


def unfactored_step(x, out, g, state, s):
    """One step of a flat device block; ``out`` may be ``x``.

    ``state`` is an ``UnfactoredState``: the second moment ``v`` and the first moment
    ``m`` (unless empty) are updated in place; ``s`` is a ``StepScalars``. Returns True.
    """
    v, mom = state
    size = g.shape[0]
    dt = np.dtype(v.dtype)
    ks = _kernels(dt)
    tpb = _tpb()
    blocks = max(1, min(_blocks_target(), _cdiv(size, tpb)))

    def make():
        return dict(upart=_device(blocks, np.float64), xpart=_device(blocks, np.float64),
                    coef=_device(4, dt))

    w = _workspace(("unfactored", blocks, dt.str), make)
    ks["second_moment"][blocks, tpb](x, g, v, w["upart"], w["xpart"], s)
    _coefficients[1, tpb](w["upart"], w["xpart"], w["coef"], size, s)
    ks["update_flat"][blocks, tpb](x, out, g, v, mom, w["coef"], mom.size > 0)
    return True


def _max_reduce(kernel, first, args):
    tpb = _tpb()
    blocks = max(1, min(_blocks_target(), _cdiv(first.shape[0], tpb)))
    w = _workspace(("max", blocks), lambda: dict(part=_device(blocks, np.float64),
                                                 out=_device(1, np.float64)))
    if blocks == 1:  # the block's maximum is the result
        kernel[1, tpb](*args, w["out"])
    else:
        kernel[blocks, tpb](*args, w["part"])
        _max_final[1, tpb](w["part"], w["out"])
    return float(w["out"].copy_to_host()[0])


def max_abs(g):
    """The largest magnitude in device array ``g`` (NaN or inf when ``g`` holds one)."""
    g = _flat(_view(g))
    if g.shape[0] == 0:
        return 0.0
    return _max_reduce(_max_abs_part, g, (g,))


def max_abs_projected(x, g, lb, ub):
    """The largest magnitude of the projected gradient step within ``[lb, ub]``.

    ``lb`` and ``ub`` are float64 device arrays (see :func:`to_device`).
    """
    x = _flat(_view(x))
    g = _flat(_view(g))
    if g.shape[0] == 0:
        return 0.0
    return _max_reduce(_max_proj_part, g, (x, g, _on_device(lb), _on_device(ub)))


def clip(x, lb, ub):
    """Project the flat device array ``x`` onto ``[lb, ub]`` in place."""
    if x.shape[0] == 0:
        return
    tpb = _tpb()
    blocks = max(1, min(_blocks_target(), _cdiv(x.shape[0], tpb)))
    _clip_kernel[blocks, tpb](x, _on_device(lb), _on_device(ub))
