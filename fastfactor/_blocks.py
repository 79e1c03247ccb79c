"""Parameter blocks: their shapes, and array views in the shapes the kernels take."""

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def normalize_shapes(shapes):
    """``shapes`` as ``(list of shape tuples, single)``.

    A shape is an int or a sequence of ints; ``shapes`` is one shape (``single`` is
    True) or a sequence of shapes. A sequence of ints is one shape, as in NumPy:
    several vector blocks are written ``[(3,), (4,)]``.
    """
    if _is_shape(shapes):
        return [_as_shape(shapes)], True
    try:
        items = list(shapes)
    except TypeError:
        raise TypeError(
            "shapes must be a shape (an int or a tuple of ints) or a list of shapes, "
            f"got {shapes!r}"
        ) from None
    if not items:
        raise ValueError("shapes is empty: give at least one block shape, "
                         "e.g. shapes=[(n, m), (m,)]")
    out = []
    for item in items:
        if not _is_shape(item):
            raise TypeError("each entry of shapes must be a shape (an int or a tuple of ints), "
                            f"got {item!r}")
        out.append(_as_shape(item))
    return out, False


def _is_shape(obj):
    if isinstance(obj, numbers.Integral) and not isinstance(obj, bool):
        return True
    if isinstance(obj, np.ndarray):  # an array of ints is one shape, as np.zeros takes it
        return obj.ndim <= 1 and obj.dtype.kind in "iu"
    if isinstance(obj, (tuple, list)):
        return all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in obj)
    return False


def _as_shape(obj):
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    shape = (int(obj),) if isinstance(obj, numbers.Integral) else tuple(int(d) for d in obj)
    if any(d < 0 for d in shape):
        raise ValueError(f"a block shape has a negative dimension: {shape}")
    return shape


def block_size(shape):
    return math.prod(shape)


def kernel_shape(shape, factored):
    """The shape a kernel takes: ``(B, n, m)`` for a factored block, ``(size,)`` otherwise."""
    if factored:
        return (block_size(shape[:-2]), shape[-2], shape[-1])
    return (block_size(shape),)


class Layout:
    """Where the blocks of ``shapes`` lie in one flat vector (C order, one after another)."""

    def __init__(self, shapes):
        self.shapes = [tuple(s) for s in shapes]
        self.offsets = [0]
        for s in self.shapes:
            self.offsets.append(self.offsets[-1] + block_size(s))

    @property
    def size(self):
        return self.offsets[-1]

    def views(self, flat):
        """The blocks of the flat array ``flat`` as views in their shapes."""
        if len(self.shapes) == 1:
            return [flat.reshape(self.shapes[0])]
        bounds = zip(self.offsets[:-1], self.offsets[1:], self.shapes, strict=True)
        return [flat[a:b].reshape(s) for a, b, s in bounds]


def may_overlap_itself(shape, strides, itemsize):
    """Whether an array of this layout may reach one element through two indices.

    A sufficient test in O(ndim), on the layout alone (host or device arrays): ordered
    by |stride|, each axis of length > 1 must step past all that the axes before it
    span. Every slice, transpose or reshape view of an array of its own passes.
    """
    if 0 in shape:
        return False
    extent = itemsize
    for stride, n in sorted((abs(s), d) for s, d in zip(strides, shape, strict=True) if d > 1):
        if stride < extent:
            return True
        extent += stride * (n - 1)
    return False


def overlap_message(shape, strides, copy="np.ascontiguousarray(p)"):
    return (f"the parameter array may overlap itself (strides {tuple(strides)} for shape "
            f"{tuple(shape)} may give overlapping elements, as np.broadcast_to and "
            "as_strided views do); the step updates parameters in place: pass an array "
            f"of its own, e.g. {copy}, and keep using that one")
