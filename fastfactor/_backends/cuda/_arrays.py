"""Device arrays: views of foreign arrays (``__cuda_array_interface__``), strides and
reshapes without copies, device-to-device copies, and the helpers the stepper calls
(``to_device``, ``zeros``, ``empty_like``, ``to_host``, ``as_param``, ``as_grad``,
``reshaped_view``, ``contiguous``, ``copy_into``).

Numba device arrays have no general strided view or copy, so both are built here
(the simulator's device arrays are NumPy arrays, hence its own ``_strided``).
"""

import math

import numpy as np
from numba import cuda

from ..._blocks import FLOAT_DTYPES, may_overlap_itself, overlap_message
from ..._inputs import as_dense_gradient, check_gradient
from ._kernels import _copy3_kernel, _fill_kernel
from ._launch import SIMULATOR, _blocks_target, _cdiv, _tpb

if SIMULATOR:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _SimArray

    def _strided(a, shape, strides):
        """A view of device array ``a``'s memory (element 0 first) with new shape/strides."""
        return _SimArray(np.lib.stride_tricks.as_strided(a._ary, tuple(shape), tuple(strides)))

    class _HostInterface:
        def __init__(self, desc, owner):
            self.__array_interface__ = dict(desc, version=3)
            self.owner = owner

    def _address(a):
        return a._ary.__array_interface__["data"][0]

    def _from_interface(obj):
        # The simulator's "device memory" is host memory: a __cuda_array_interface__
        # pointer is a host pointer, viewed here through the NumPy array interface.
        desc = obj.__cuda_array_interface__
        keep = {k: desc[k] for k in ("shape", "typestr", "data", "strides") if k in desc}
        return _SimArray(np.asarray(_HostInterface(keep, obj)))
else:
    from numba.cuda.cudadrv.devicearray import DeviceNDArray as _DeviceNDArray

    def _strided(a, shape, strides):
        """A view of device array ``a``'s memory (element 0 first) with new shape/strides."""
        return _DeviceNDArray(tuple(shape), tuple(strides), a.dtype, stream=a.stream,
                              gpu_data=a.gpu_data)

    def _address(a):
        return a.device_ctypes_pointer.value or 0

    def _from_interface(obj):
        desc = obj.__cuda_array_interface__
        # Work on Numba's default stream is ordered after the legacy (1) and
        # per-thread (2) default streams; any other stream is synchronised first.
        sync = desc.get("stream") not in (None, 1, 2)
        return cuda.from_cuda_array_interface(desc, owner=obj, sync=sync)


def is_device_array(a):
    """True for Numba device arrays and objects exposing ``__cuda_array_interface__``."""
    return bool(getattr(a, "__cuda_ndarray__", False)) or hasattr(a, "__cuda_array_interface__")


def _view(a):
    """``a`` as a Numba device array of the same memory (TypeError if not on the device)."""
    if getattr(a, "__cuda_ndarray__", False):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        desc = a.__cuda_array_interface__
        if desc.get("mask") is not None:
            raise TypeError("masked device arrays are not supported")
        return _from_interface(a)
    raise TypeError(f"expected a device array (a Numba device array or an object with "
                    f"__cuda_array_interface__), got {type(a).__name__}")


def _readonly(a):
    desc = getattr(a, "__cuda_array_interface__", None)
    return bool(desc is not None and desc["data"][1])


def _c_strides(shape, itemsize):
    strides = []
    s = itemsize
    for d in reversed(shape):
        strides.append(s)
        s *= max(d, 1)
    return tuple(reversed(strides))


def _is_c_contiguous(a):
    return (a.size == 0
            or _collapse(a.shape, [a.strides], a.dtype.itemsize)[1][0] == (a.dtype.itemsize,))


def _nocopy_strides(shape, strides, newshape, itemsize):
    """Strides for viewing (shape, strides) as ``newshape`` without a copy, or None.

    NumPy's rule: each group of old axes that maps onto a group of new axes must be
    contiguous among itself (in C order).
    """
    if math.prod(shape) != math.prod(newshape):
        raise ValueError(f"cannot reshape {tuple(shape)} into {tuple(newshape)}")
    if math.prod(shape) == 0:
        return _c_strides(newshape, itemsize)
    old = [(d, s) for d, s in zip(shape, strides, strict=True) if d != 1]
    od = [d for d, _ in old]
    os_ = [s for _, s in old]
    new = list(newshape)
    out = [0] * len(new)
    oi = ni = 0
    while ni < len(new) and oi < len(od):
        npr, opr = new[ni], od[oi]
        nj, oj = ni + 1, oi + 1
        while npr != opr:
            if npr < opr:
                npr *= new[nj]
                nj += 1
            else:
                opr *= od[oj]
                oj += 1
        for ok in range(oi, oj - 1):
            if os_[ok] != od[ok + 1] * os_[ok + 1]:
                return None
        out[nj - 1] = os_[oj - 1]
        for nk in range(nj - 1, ni, -1):
            out[nk - 1] = out[nk] * new[nk]
        ni, oi = nj, oj
    last = out[ni - 1] if ni > 0 else itemsize
    for nk in range(ni, len(new)):
        out[nk] = last
    return tuple(out)


def _collapse(shape, stride_lists, itemsize):
    """Drop unit axes and merge adjacent axes that are contiguous in every stride list."""
    axes = [k for k, d in enumerate(shape) if d != 1]
    if not axes:
        return (1,), [(itemsize,) for _ in stride_lists]
    dims = [shape[axes[0]]]
    strides = [[st[axes[0]]] for st in stride_lists]
    for k in axes[1:]:
        d = shape[k]
        if all(s[-1] == st[k] * d for s, st in zip(strides, stride_lists, strict=True)):
            dims[-1] *= d
            for s, st in zip(strides, stride_lists, strict=True):
                s[-1] = st[k]
        else:
            dims.append(d)
            for s, st in zip(strides, stride_lists, strict=True):
                s.append(st[k])
    return tuple(dims), [tuple(s) for s in strides]


def _linear(a):
    """The 1-D view of a C-contiguous device array."""
    return a if a.ndim == 1 else _strided(a, (a.size,), (a.dtype.itemsize,))


def _flat(a):
    """A 1-D view of ``a``, or a contiguous 1-D copy when no view exists."""
    if a.ndim == 1:
        return a
    v = reshaped_view(a, (a.size,))
    return v if v is not None else contiguous(a, (a.size,))


def _copy(src, dst):
    """dst[...] = src on the device (same shape; any strides; dtype converted)."""
    if src.size == 0:
        return
    if src.dtype == dst.dtype and _is_c_contiguous(src) and _is_c_contiguous(dst):
        _linear(dst).copy_to_device(_linear(src))  # one device-to-device copy
        return
    shape, (ss, ds) = _collapse(src.shape, [src.strides, dst.strides], src.dtype.itemsize)
    if len(shape) > 3:  # rare: copy sub-arrays along the first axis
        s3 = _strided(src, shape, ss)
        d3 = _strided(dst, shape, ds)
        for i in range(shape[0]):
            _copy(s3[i], d3[i])
        return
    pad = 3 - len(shape)
    shape3 = (1,) * pad + shape
    s3 = _strided(src, shape3, (0,) * pad + ss)
    d3 = _strided(dst, shape3, (0,) * pad + ds)
    tpb = _tpb()
    blocks = max(1, min(_blocks_target(), _cdiv(src.size, tpb)))
    _copy3_kernel[blocks, tpb](s3, d3)


def _check_strides(a, what, writes=False):
    if a.size == 0:
        return
    if any(s < 0 for s, d in zip(a.strides, a.shape, strict=True) if d > 1):
        raise ValueError(f"{what}: device arrays with negative strides are not supported; "
                         "pass a copy")
    if writes and may_overlap_itself(tuple(a.shape), tuple(a.strides), a.dtype.itemsize):
        raise ValueError(overlap_message(a.shape, a.strides, "a contiguous copy"))


def _span(a):
    """The byte range ``[lo, hi)`` of a non-empty device array's elements."""
    lo = hi = _address(a)
    for s, d in zip(a.strides, a.shape, strict=True):
        if s < 0:
            lo += s * (d - 1)
        else:
            hi += s * (d - 1)
    return lo, hi + a.dtype.itemsize


def _may_share_memory(a, b):
    """Whether two device arrays' address ranges overlap (np.may_share_memory's test)."""
    if a.size == 0 or b.size == 0:
        return False
    (alo, ahi), (blo, bhi) = _span(a), _span(b)
    return alo < bhi and blo < ahi


class _Layout:
    """The NumPy array interface of a device array's layout; an array made from it is
    never read, only compared by address (np.shares_memory does arithmetic only)."""

    def __init__(self, a):
        self.__array_interface__ = {"data": (_address(a), True), "shape": tuple(a.shape),
                                    "strides": tuple(a.strides), "typestr": a.dtype.str,
                                    "version": 3}


def _shares_memory(a, b):
    """Whether two device arrays have an element in common (np.shares_memory's answer,
    so interleaved arrays do not count)."""
    return _may_share_memory(a, b) and bool(
        np.shares_memory(np.asarray(_Layout(a)), np.asarray(_Layout(b))))


def _on_device(a):
    """A host array moved to the device (contiguous), a device array as it is."""
    if is_device_array(a):
        return _view(a)
    return cuda.to_device(np.ascontiguousarray(a))


def to_device(a):
    """A device copy of host array ``a`` (C-contiguous)."""
    return cuda.to_device(np.ascontiguousarray(a))


def zeros(shape, dtype):
    a = cuda.device_array(shape, np.dtype(dtype))
    if a.size:
        flat = _linear(a)
        tpb = _tpb()
        _fill_kernel[max(1, min(_blocks_target(), _cdiv(a.size, tpb))), tpb](flat, 0)
    return a


def empty_like(a):
    return cuda.device_array(a.shape, a.dtype)


def to_host(a):
    """A NumPy copy of device array ``a``."""
    a = _view(a)
    if not _is_c_contiguous(a):
        a = contiguous(a, a.shape)
    if a.size == 0:
        return np.empty(a.shape, a.dtype)
    return a.copy_to_host()


def as_param(p, shape, others=()):
    """``p`` checked as a parameter block of ``shape``: a Numba view of its device memory.

    ``others`` are the checked parameters of the blocks before this one: ``p`` must not
    share memory with any of them (each would be stepped once per block).
    """
    if isinstance(p, np.ndarray) or not is_device_array(p):
        raise TypeError(
            f"with device='cuda', parameters must be device arrays (updated in place): Numba "
            f"device arrays or objects with __cuda_array_interface__ (CuPy arrays, PyTorch "
            f"CUDA tensors), got {type(p).__name__}; move a NumPy array with "
            f"numba.cuda.to_device")
    if _readonly(p):
        raise ValueError("a parameter array is read-only; the step updates parameters in place")
    d = _view(p)
    if tuple(d.shape) != tuple(shape):
        raise ValueError(f"parameter of shape {tuple(d.shape)} does not match the block "
                         f"shape {shape}")
    if np.dtype(d.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"parameters must be float32 or float64, got {d.dtype}")
    _check_strides(d, "parameter", writes=True)
    for j, q in enumerate(others):
        if _shares_memory(d, q):
            raise ValueError(f"the parameters of blocks {j} and {len(others)} share memory; "
                             "each block must be an array of its own (pass copies)")
    return d


def checked_grad(g, shape, what):
    """``g`` checked against ``shape``: ``(array, on_device)``, a device view when ``g``
    is a device array, else a NumPy array. ``what`` names the shape in the error."""
    on_device = is_device_array(g)
    a = _view(g) if on_device else as_dense_gradient(g)
    check_gradient(a.shape, a.dtype, shape, what)
    if on_device:
        _check_strides(a, "gradient")
    return a, on_device


def as_grad(g, shape, dtype, params=()):
    """``g`` (host or device) as a C-contiguous device array of ``shape`` in ``dtype``.

    A device gradient already in that form is used as it is, unless it may share memory
    with any of ``params`` (the step's parameters, updated one block after another);
    others are converted on the device; a host gradient is copied to the device.
    """
    dtype = np.dtype(dtype)
    a, on_device = checked_grad(g, shape, "the block shape")
    if not on_device:
        if a.dtype != dtype:
            # a value beyond dtype's range becomes inf, which then propagates as any inf
            with np.errstate(over="ignore"):
                a = a.astype(dtype)
        return cuda.to_device(np.ascontiguousarray(a))
    if (a.dtype == dtype and _is_c_contiguous(a)
            and not any(_may_share_memory(a, p) for p in params)):
        return a
    out = cuda.device_array(a.shape, dtype)
    _copy(a, out)
    return out


def reshaped_view(a, shape):
    """``a`` reshaped to ``shape`` as a view of the same memory, or None if that needs a copy."""
    shape = tuple(shape)
    if tuple(a.shape) == shape:
        return a
    strides = _nocopy_strides(tuple(a.shape), tuple(a.strides), shape, a.dtype.itemsize)
    if strides is None:
        return None
    if a.size == 0:
        return cuda.device_array(shape, a.dtype)
    return _strided(a, shape, strides)


def contiguous(a, shape):
    """A C-contiguous device copy of ``a`` in ``shape``."""
    out = cuda.device_array(tuple(a.shape), a.dtype)
    _copy(a, out)
    return out.reshape(tuple(shape))


def copy_into(dst, src):
    """``dst[...] = src`` (same number of elements; ``src`` on the host or the device)."""
    if dst.size == 0:
        return
    if not is_device_array(src):
        h = np.ascontiguousarray(np.asarray(src), dtype=dst.dtype).reshape(tuple(dst.shape))
        if _is_c_contiguous(dst):
            _linear(dst).copy_to_device(h.reshape(h.size))
            return
        src = cuda.to_device(h)
    src = _view(src)
    s = reshaped_view(src, tuple(dst.shape))
    if s is None:
        s = contiguous(src, tuple(dst.shape))
    _copy(s, dst)
