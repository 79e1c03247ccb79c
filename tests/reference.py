"""A plain-NumPy reference implementation of Adafactor, written to be read.

Nothing here is optimised: the second-moment estimate ``V`` of a factored
block is built explicitly as an array, ``U`` and ``Û`` too, so that every line
can be checked against the algorithm as Shazeer & Stern (2018) state it
(Algorithms 4 and 5, with the recommended hyper-parameters):

    rho_t   = lr                         (fixed lr)
            = lr(t)                      (callable lr)
            = min(1e-2, 1/sqrt(t))       (lr=None, relative step)
            = min(1e-6 t, 1/sqrt(t))     (lr=None with warmup_init)
    alpha_t = max(eps2, RMS(x_{t-1})) rho_t   (scale_parameter) else rho_t
    beta2_t = 1 - t**decay_rate

    unfactored block:  V_t = beta2_t V_{t-1} + (1-beta2_t) (g² + eps1)
    factored block (over the last two axes, leading axes are a batch):
        R_t = beta2_t R_{t-1} + (1-beta2_t) mean over columns of (g² + eps1)
        C_t = beta2_t C_{t-1} + (1-beta2_t) mean over rows of (g² + eps1)
        V_t = outer(R_t, C_t) / mean(R_t)          (one mean per matrix)

    U_t = g / sqrt(V_t)  (0 where V_t = 0);   Û_t = U_t / max(1, RMS(U_t) / clip_threshold)
    u_t = alpha_t Û_t;     with beta1: M_t = beta1 M_{t-1} + (1-beta1) u_t, u_t = M_t
    x_t = x_{t-1} - weight_decay alpha_t x_{t-1} - u_t

RMS is always taken over the whole block (batch axes included); every block has
its own alpha_t and RMS(U_t); all blocks share t.  Arithmetic is done in the
parameter's dtype.

A second-moment entry V_t is exactly zero only with eps1 = 0 (a gradient entry that
has been zero so far, or whose square underflows; in a factored block, a zero row
statistic R_i or column statistic C_j, or all of R when the whole gradient is zero):
its update U_t is then 0, not 0/0.  A NaN or inf in g still gives NaN.
"""

import math

import numpy as np

__all__ = ["ReferenceAdafactor", "reference_minimize", "split_flat", "join_flat", "X0", "G1", "X1"]

# The worked example of the spec (first iteration), its numbers copied here
# (6 decimals, so comparisons with them use atol=1e-6).
X0 = np.array([[0.7, -0.5, 0.9], [-1.1, 0.8, -1.6], [1.2, -0.7, 0.4]])
G1 = np.array([[0.3, -0.2, 0.4], [-0.5, 0.6, -0.1], [0.2, -0.4, 0.3]])
ALPHA1 = 0.00945751
R1 = np.array([0.096667, 0.206667, 0.096667])
C1 = np.array([0.126667, 0.186667, 0.086667])
V1 = np.array(
    [
        [0.091833, 0.135333, 0.062833],
        [0.196333, 0.289333, 0.134333],
        [0.091833, 0.135333, 0.062833],
    ]
)
U1 = np.array(
    [
        [0.989968, -0.543660, 1.595750],
        [-1.128426, 1.115455, -0.272840],
        [0.659979, -1.087321, 1.196813],
    ]
)
RMS_U1 = 1.025467
UHAT1 = np.array(
    [
        [0.965382, -0.530159, 1.556120],
        [-1.100402, 1.087753, -0.266064],
        [0.643588, -1.060317, 1.167090],
    ]
)
X1 = np.array(
    [
        [0.690870, -0.494986, 0.885283],
        [-1.089593, 0.789713, -1.597484],
        [1.193913, -0.689972, 0.388962],
    ]
)


def _rms(a):
    return np.sqrt(np.mean(np.square(a)))


class _Block:
    """Second-moment (and optional first-moment) state of one parameter block."""

    def __init__(self, shape, factored, dtype):
        self.shape = tuple(shape)
        self.factored = factored
        self.dtype = np.dtype(dtype)
        if factored:
            self.R = np.zeros(self.shape[:-1], dtype=self.dtype)  # (..., n)
            self.C = np.zeros(self.shape[:-2] + self.shape[-1:], dtype=self.dtype)  # (..., m)
            self.V = None
        else:
            self.R = self.C = None
            self.V = np.zeros(self.shape, dtype=self.dtype)
        self.M = None  # first moment, created on first use

    def second_moment(self, g, beta2, eps1):
        """Update the state with gradient ``g`` and return the full array V_t."""
        g2 = np.square(g) + eps1
        if not self.factored:
            self.V = beta2 * self.V + (1 - beta2) * g2
            return self.V
        row_mean = np.mean(g2, axis=-1)  # mean over columns -> (..., n)
        col_mean = np.mean(g2, axis=-2)  # mean over rows    -> (..., m)
        self.R = beta2 * self.R + (1 - beta2) * row_mean
        self.C = beta2 * self.C + (1 - beta2) * col_mean
        outer = np.einsum("...i,...j->...ij", self.R, self.C)
        mean_r = np.mean(self.R, axis=-1)[..., np.newaxis, np.newaxis]
        # mean(R) = 0 only when all of R is: V is then 0 (outer is), not 0/0
        return outer / np.where(mean_r == 0, mean_r.dtype.type(1), mean_r)


class ReferenceAdafactor:
    """Adafactor on a list of blocks of the given shapes; ``step`` returns new arrays."""

    def __init__(
        self,
        shapes,
        lr=None,
        eps1=1e-30,
        eps2=1e-3,
        clip_threshold=1.0,
        decay_rate=-0.8,
        beta1=None,
        weight_decay=0.0,
        scale_parameter=True,
        warmup_init=False,
        min_dim_size_to_factor=1,
    ):
        self.shapes = [tuple(int(n) for n in s) for s in shapes]
        self.lr = lr
        self.eps1 = eps1
        self.eps2 = eps2
        self.clip_threshold = clip_threshold
        self.decay_rate = decay_rate
        self.beta1 = beta1
        self.weight_decay = weight_decay
        self.scale_parameter = scale_parameter
        self.warmup_init = warmup_init
        self.min_dim_size_to_factor = min_dim_size_to_factor
        self.t = 0
        self.blocks = None  # created at the first step, in the parameters' dtypes

    def is_factored(self, shape):
        return (
            len(shape) >= 2
            and shape[-1] >= self.min_dim_size_to_factor
            and shape[-2] >= self.min_dim_size_to_factor
        )

    def rho(self, t):
        if self.lr is None:
            if self.warmup_init:
                return min(1e-6 * t, 1.0 / math.sqrt(t))
            return min(1e-2, 1.0 / math.sqrt(t))
        if callable(self.lr):
            return float(self.lr(t))
        return float(self.lr)

    def step(self, params, grads):
        params = [np.asarray(p) for p in params]
        grads = [np.asarray(g) for g in grads]
        assert len(params) == len(grads) == len(self.shapes)
        for p, g, s in zip(params, grads, self.shapes, strict=True):
            assert p.shape == s and g.shape == s, (p.shape, g.shape, s)
        if self.blocks is None:
            self.blocks = [
                _Block(s, self.is_factored(s), p.dtype)
                for s, p in zip(self.shapes, params, strict=True)
            ]
        self.t += 1
        t = self.t
        rho = self.rho(t)
        beta2 = 1.0 - t**self.decay_rate
        return [self._step_block(b, p, g, rho, beta2)
                for b, p, g in zip(self.blocks, params, grads, strict=True)]

    def _step_block(self, block, x, g, rho, beta2):
        dt = block.dtype
        x = x.astype(dt, copy=True)
        g = g.astype(dt, copy=False)
        one = dt.type(1)
        if self.scale_parameter:
            alpha = dt.type(max(dt.type(self.eps2), _rms(x)) * dt.type(rho))
        else:
            alpha = dt.type(rho)
        beta2 = dt.type(beta2)
        V = block.second_moment(g, beta2, dt.type(self.eps1))
        with np.errstate(divide="ignore", invalid="ignore"):
            U = np.where(V == 0, dt.type(0), g / np.sqrt(V))
        U_hat = U / max(one, _rms(U) / dt.type(self.clip_threshold))
        u = alpha * U_hat
        if self.beta1 is not None:
            b1 = dt.type(self.beta1)
            if block.M is None:
                block.M = np.zeros(block.shape, dtype=dt)
            block.M = b1 * block.M + (one - b1) * u
            u = block.M
        if self.weight_decay:
            x = x - dt.type(self.weight_decay) * alpha * x
        return (x - u).astype(dt, copy=False)


def split_flat(x, shapes):
    """Split a flat vector into C-ordered blocks of the given shapes (copies)."""
    x = np.asarray(x).ravel()
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    assert sum(sizes) == x.size, (sizes, x.size)
    out, start = [], 0
    for s, n in zip(shapes, sizes, strict=True):
        out.append(x[start : start + n].reshape(s).copy())
        start += n
    return out


def join_flat(blocks):
    return np.concatenate([np.ravel(b) for b in blocks]) if blocks else np.empty(0)


def reference_minimize(grad_fn, x0, n_iter, shapes=None, bounds=None, **hyper):
    """Plain Adafactor iterations x_{k+1} = step(x_k, grad_fn(x_k)).

    ``x0`` may have any shape; ``grad_fn`` receives and returns arrays of that
    shape.  ``shapes`` partitions the flattened x (C order) into blocks; the
    default is one block of x0's shape.  ``bounds`` = (lb, ub) arrays (or
    scalars) broadcastable to x0: every iterate is clipped into the box, and so
    is x0.  Returns the list ``[x_0, x_1, ..., x_{n_iter}]`` (x0's shape and dtype).
    """
    x = np.array(x0, copy=True)
    if x.dtype.kind in "iub":
        x = x.astype(np.float64)
    if shapes is None:
        shapes = [x.shape]
    elif len(shapes) > 0 and all(isinstance(n, (int, np.integer)) for n in shapes):
        shapes = [tuple(shapes)]  # a single shape
    if bounds is not None:
        lb, ub = bounds
        x = np.clip(x, lb, ub).astype(x.dtype, copy=False)
    opt = ReferenceAdafactor(shapes, **hyper)
    iterates = [x.copy()]
    for _ in range(n_iter):
        g = np.asarray(grad_fn(x.copy()), dtype=x.dtype)
        new_blocks = opt.step(split_flat(x, shapes), split_flat(g, shapes))
        x = join_flat(new_blocks).astype(x.dtype, copy=False).reshape(x.shape)
        if bounds is not None:
            x = np.clip(x, lb, ub).astype(x.dtype, copy=False)
        iterates.append(x.copy())
    return iterates
