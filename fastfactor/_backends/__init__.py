"""Backends: where the steps run. ``get_backend(device)`` is the one place a device
name is tested; ``_protocol`` says what a backend provides."""

DEVICES = ("cpu", "cuda")


def get_backend(device):
    """The backend for ``device``: ``cpu``, or ``cuda`` (imported only when asked for)."""
    if device == "cpu":
        from .cpu import BACKEND
        return BACKEND
    if device == "cuda":
        return _cuda_backend()
    raise ValueError(f"device must be one of {DEVICES}, got {device!r}")


def _cuda_backend():
    """The CUDA backend (imports numba.cuda); RuntimeError when CUDA is not usable."""
    try:
        from . import cuda
    except (ImportError, OSError) as exc:
        raise RuntimeError(
            f"device='cuda' needs a usable CUDA stack, but numba.cuda cannot be imported "
            f"({type(exc).__name__}: {exc}). Install the CUDA extra with "
            "pip install \"fastfactor[cuda]\" (numba-cuda with the CUDA 12 runtime wheels) "
            "on a machine with an NVIDIA GPU and driver.") from exc
    cuda.require_device()
    return cuda.BACKEND
