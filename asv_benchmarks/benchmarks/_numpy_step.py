"""A plain NumPy Adafactor step: the baseline the suite compares fastfactor with.

This is how Adafactor is usually written with array operations (Shazeer & Stern 2018,
Algorithms 4 and 5; see ``shared/adafactor.md``): the row and column means of ``g**2``,
the second-moment estimate ``V`` built as an outer product, ``U = g / sqrt(V)``, update
clipping, and the update. It keeps the paper's defaults (relative step
``rho_t = min(1e-2, 1/sqrt(t))``, parameter scaling, ``beta2_t = 1 - t**-0.8``,
``eps1 = 1e-30``, ``eps2 = 1e-3``, ``d = 1``, no first moment, no weight decay).

It is written to be fair to NumPy: one ``n x m`` temporary per factored block (``g**2``,
then ``V``, then ``U`` in the same buffer), in-place updates, and BLAS dot products for
the RMS values. What it cannot avoid, being made of whole-array operations, is the
memory traffic of that temporary (``g**2`` written and read back, ``V`` written, ``U``
written and read twice).
"""

import math

import numpy as np


def _rms(a):
    """sqrt(mean(a**2)) over the whole array, without a temporary (a BLAS dot)."""
    flat = a.reshape(-1)
    return math.sqrt(float(np.dot(flat, flat)) / flat.size)


class NumpyAdafactor:
    """Adafactor for a list of blocks, in plain NumPy; ``step`` updates in place.

    Blocks with ``ndim >= 2`` are factored over their last two axes (leading axes
    are a batch); vectors keep a full second moment.
    """

    def __init__(self, shapes, eps1=1e-30, eps2=1e-3, clip_threshold=1.0, decay_rate=-0.8):
        self.shapes = [tuple(s) for s in shapes]
        self.eps1, self.eps2, self.clip, self.decay_rate = eps1, eps2, clip_threshold, decay_rate
        self.t = 0
        self.state = None

    def _init_state(self, dtype):
        self.state = []
        for shape in self.shapes:
            if len(shape) >= 2:
                self.state.append({"r": np.zeros(shape[:-1], dtype),
                                   "c": np.zeros(shape[:-2] + shape[-1:], dtype)})
            else:
                self.state.append({"v": np.zeros(shape, dtype)})

    def step(self, params, grads):
        if self.state is None:
            self._init_state(params[0].dtype)
        self.t += 1
        t = self.t
        rho = min(1e-2, 1.0 / math.sqrt(t))
        beta2 = 1.0 - t ** self.decay_rate
        for x, g, st in zip(params, grads, self.state, strict=True):
            alpha = max(self.eps2, _rms(x)) * rho
            if "v" in st:
                u = self._unfactored(g, st["v"], beta2)
            else:
                u = self._factored(g, st["r"], st["c"], beta2)
            # Update clipping, then x <- x - alpha * U / max(1, RMS(U) / d).
            u *= alpha / max(1.0, _rms(u) / self.clip)
            x -= u
        return params

    def _factored(self, g, r, c, beta2):
        """U = g / sqrt(V) with V = R C^T / mean(R); r and c are updated in place."""
        sq = np.square(g)                       # the one n x m temporary
        sq += self.eps1
        r *= beta2
        r += (1.0 - beta2) * sq.mean(axis=-1)
        c *= beta2
        c += (1.0 - beta2) * sq.mean(axis=-2)
        # V as the outer product of R and C / mean(R), written over g**2.
        c_scaled = c / r.mean(axis=-1, keepdims=True)
        v = np.multiply(r[..., :, np.newaxis], c_scaled[..., np.newaxis, :], out=sq)
        np.sqrt(v, out=v)
        return np.divide(g, v, out=v)

    def _unfactored(self, g, v, beta2):
        """U = g / sqrt(V) with the full second moment V (updated in place)."""
        sq = np.square(g)
        sq += self.eps1
        v *= beta2
        sq *= 1.0 - beta2
        v += sq
        np.sqrt(v, out=sq)
        return np.divide(g, sq, out=sq)
