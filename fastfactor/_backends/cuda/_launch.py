"""Launch geometry of the CUDA backend: block shapes and grid sizes.

The ``*_MAX`` bounds, ``J`` and ``RB`` are fixed when a kernel compiles (they size
shared and local arrays). ``LANES``, ``WARPS``, ``BLOCKS_TARGET`` and ``SPANS_MAX`` are
read here at every launch, so tests change them on this module
(``fastfactor._backends.cuda._launch``), not on the package.
"""

from numba import cuda

#: True when running in Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1).
SIMULATOR = cuda.device_array.__module__.startswith("numba.cuda.simulator")

# --- launch geometry -------------------------------------------------------------------
#: Upper bounds, fixed at compile time (shared and local array sizes).
LANES_MAX = 32          # threads of a warp along the columns
WARPS_MAX = 8           # warps of a block
J = 8                   # columns per lane in a column tile (tile width LANES * J)
RB = 8                  # rows per warp between two row reductions in ``stats``
SPANS_MAX = 32          # column-tile groups in ``stats`` (bounds its row partial sums)
TPB_MAX = LANES_MAX * WARPS_MAX
SBUF = max(WARPS_MAX * RB * (LANES_MAX + 1), WARPS_MAX * LANES_MAX * J)

#: The geometry used (read at every launch, so tests may change it). On a GPU a
#: block is 32 x 8 threads; the simulator runs every thread as a Python thread, so
#: there blocks are 4 x 2 threads (the same code, smaller loops).
LANES = 4 if SIMULATOR else 32
WARPS = 2 if SIMULATOR else 8
#: Blocks to aim for in a grid (None: 16 per multiprocessor; 1 in the simulator,
#: where every block costs milliseconds; tests raise it to cover multi-block grids).
BLOCKS_TARGET = None


def _tpb():
    return LANES * WARPS


def _blocks_target():
    global BLOCKS_TARGET
    if BLOCKS_TARGET is None:
        if SIMULATOR:
            BLOCKS_TARGET = 1
        else:
            BLOCKS_TARGET = 16 * int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    return BLOCKS_TARGET


def _cdiv(a, b):
    return -(-a // b)


# --- grid sizes of a factored step -----------------------------------------------------
def _factored_plan(nb, n, m):
    """Grid sizes: ``spans`` (groups of column tiles, at most SPANS_MAX) times ``strips``
    (groups of ``rps`` rows) times the batch for ``stats``; ``ublocks`` for the
    element-wise passes. The partial sums take ``spans * B * n`` and ``strips * B * m``
    float64 numbers, where ``spans * strips * B`` is about BLOCKS_TARGET: O(n + m) for a
    given device, never of the order of ``n * m``."""
    lanes, warps = LANES, WARPS
    target = _blocks_target()
    spans = min(_cdiv(m, lanes * J), SPANS_MAX)
    strips = max(1, min(_cdiv(n, warps * RB), _cdiv(target, spans * nb)))
    rps = _cdiv(n, strips)
    strips = _cdiv(n, rps)
    chunks = _cdiv(n + m, lanes * warps)
    rchunks = _cdiv(n, lanes * warps)
    nch = _cdiv(m, lanes * J)
    tasks = nb * n * nch
    ublocks = max(1, min(target, _cdiv(tasks, warps)))
    return spans, strips, rps, chunks, rchunks, nch, ublocks
