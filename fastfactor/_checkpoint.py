"""The stepper's state out and in: ``state_dict``/``load_state_dict`` (plain dicts) and
``save_state``/``load_state`` (``.npz`` checkpoints read without pickle), each checked
whole before anything changes. ``Adafactor`` takes these methods from ``StateIO``."""

import json
import numbers
from collections.abc import Mapping

import numpy as np

from ._blocks import FLOAT_DTYPES

#: The most steps a state holds: ``t`` is saved as an int64.
MAX_T = 2**63 - 1


class StateIO:
    """The state methods of :class:`fastfactor.Adafactor` (which provides ``shapes``,
    ``factored``, ``hyper``, ``backend``, ``_state``, ``_allocate`` and ``_lock``)."""

    def save_state(self, file):
        """Write the state to ``file`` (a path or a binary file) as a NumPy ``.npz``
        archive that loads without pickle: the checkpoint format to prefer.

        The arrays of :meth:`state_dict` (``block{i}_{row,col,v,m}``) and ``t`` and the
        shapes; not the hyper-parameters, which are the loading optimizer's own.
        """
        state = self.state_dict()
        arrays = {"t": np.int64(state["t"]),
                  "shapes": np.array(json.dumps(state["shapes"]))}
        for i, block in enumerate(state["blocks"]):
            for key, arr in block.items():
                arrays[f"block{i}_{key}"] = arr
        np.savez(file, **arrays)

    def load_state(self, file):
        """Restore a state written by :meth:`save_state` (read with
        ``allow_pickle=False``: a checkpoint from elsewhere cannot run code), checked as
        :meth:`load_state_dict` checks it."""
        with np.load(file, allow_pickle=False) as data:
            names = set(data.files)
            if not {"t", "shapes"} <= names:
                raise ValueError(f"{file!r} is not a fastfactor state (no 't' or 'shapes'); "
                                 "write one with Adafactor.save_state")
            blocks = []
            i = 0
            while any(name.startswith(f"block{i}_") for name in names):
                prefix = f"block{i}_"
                blocks.append({name[len(prefix):]: data[name] for name in names
                               if name.startswith(prefix)})
                i += 1
            t = data["t"]
            if t.shape != () or t.dtype.kind not in "iu":
                raise ValueError(f"the state's t must be one integer, got {t!r}")
            state = {"t": int(t), "shapes": json.loads(str(data["shapes"])),
                     "blocks": blocks}
        self.load_state_dict(state)

    def state_dict(self):
        """The optimizer's state as a plain, picklable dict (copies).

        Keys: ``"t"`` (steps taken), ``"shapes"``, ``"hyper"`` (the hyper-parameters,
        for the record; a callable ``lr`` appears as its ``repr``)
        and ``"blocks"``: per block, ``"row"`` (shape ``(..., n)``) and ``"col"``
        (``(..., m)``) for a factored block or ``"v"`` (the block's shape) for an
        unfactored one, and ``"m"`` (the first moment) when ``beta1`` is set.
        """
        blocks = []
        host = self.backend.to_host
        for shape, factored, st in zip(self.shapes, self.factored, self._state or [],
                                       strict=self._state is not None):
            out = {}
            if factored:
                out["row"] = host(st.row).reshape(shape[:-1])
                out["col"] = host(st.col).reshape(shape[:-2] + shape[-1:])
            else:
                out["v"] = host(st.v).reshape(shape)
            if self.hyper.beta1 is not None:
                out["m"] = host(st.m).reshape(shape)
            blocks.append(out)
        hyper = self.hyper.as_dict()
        if callable(hyper["lr"]):  # keep the dict picklable: a schedule is recorded by name
            hyper["lr"] = repr(hyper["lr"])
        return {"t": self.t, "shapes": [tuple(s) for s in self.shapes],
                "hyper": hyper, "blocks": blocks}

    def load_state_dict(self, state):
        """Restore a state from :meth:`state_dict` (the arrays are copied in).

        The shapes and the factoring must match this optimizer's, and so must the
        arrays: each of the shape :meth:`state_dict` gives it, all of one float dtype
        (float32 or float64), ``"m"`` exactly when ``beta1`` is set. A state with
        ``t = 0`` (before the first step) holds no arrays (``"blocks": []``). The
        hyper-parameters are this optimizer's own (not taken from ``state``).
        Everything is checked before anything changes: a state that is refused
        (``ValueError``/``TypeError``, naming the block and key) leaves this optimizer
        as it was.
        """
        with self._lock:
            self._load_state_dict(state)

    def _load_state_dict(self, state):
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a dict from state_dict(), got "
                            f"{type(state).__name__}")
        for key in ("t", "shapes", "blocks"):
            if key not in state:
                raise ValueError(f"state lacks {key!r}; pass a dict from state_dict()")
        try:
            shapes = [tuple(s) for s in state["shapes"]]
        except TypeError:
            raise TypeError(f"state['shapes'] must be a list of shapes, got "
                            f"{state['shapes']!r}") from None
        if shapes != self.shapes:
            raise ValueError(f"state is for shapes {shapes}, this optimizer has {self.shapes}")
        t = state["t"]
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 <= t <= MAX_T:
            raise ValueError(f"state['t'] must be an integer from 0 to 2**63 - 1 (the steps "
                             f"taken, saved as an int64), got {t!r}")
        blocks = state["blocks"]
        if not isinstance(blocks, (list, tuple)):
            raise TypeError(f"state['blocks'] must be a list of dicts (one per block), got "
                            f"{type(blocks).__name__}")
        if not blocks:  # no statistics yet (or discarded): they start at zero
            self._t, self._state, self._dtype = int(t), None, None
            return
        if t == 0:
            raise ValueError("state['t'] is 0 (no step taken) but state['blocks'] holds "
                             f"{len(blocks)} blocks of statistics; a state before the first "
                             "step has blocks=[] (set 't' to the steps they come from)")
        if len(blocks) != len(self.shapes):
            raise ValueError(f"state has {len(blocks)} blocks, this optimizer has "
                             f"{len(self.shapes)}")
        arrays = [self._block_arrays(i, saved) for i, saved in enumerate(blocks)]
        dtype = _one_dtype(arrays)
        checked = [self._checked_block(i, block) for i, block in enumerate(arrays)]
        self._allocate(dtype)
        for st, block in zip(self._state, checked, strict=True):
            for key, arr in block.items():
                self.backend.copy_into(getattr(st, key), arr)
        self._t = int(t)

    def _expected(self, i):
        """``{key: shape}`` of the arrays block ``i`` keeps, as state_dict gives them."""
        shape = self.shapes[i]
        if self.factored[i]:
            out = {"row": shape[:-1], "col": shape[:-2] + shape[-1:]}
        else:
            out = {"v": shape}
        if self.hyper.beta1 is not None:
            out["m"] = shape
        return out

    def _block_arrays(self, i, saved):
        """Block ``i``'s saved arrays ``{key: ndarray}``, with this optimizer's keys and
        shapes (not yet their values)."""
        shape = self.shapes[i]
        if not isinstance(saved, Mapping):
            raise TypeError(f"state['blocks'][{i}] must be a dict of arrays (as state_dict "
                            f"gives), got {type(saved).__name__}")
        expected = self._expected(i)
        if set(saved) != set(expected):
            raise ValueError(
                f"state block {i} (shape {shape}) holds {sorted(map(str, saved))}, this optimizer "
                f"keeps {sorted(expected)} for it: 'row'/'col' (factored) or 'v' follow "
                "min_dim_size_to_factor, 'm' is kept exactly when beta1 is set; construct "
                "the optimizer with the hyper-parameters the state was saved with")
        out = {}
        for key, want in expected.items():
            arr = np.asarray(saved[key])
            if arr.dtype.kind != "f":
                raise TypeError(f"state {key!r} of block {i} (shape {shape}) must be float32 "
                                f"or float64, got dtype {arr.dtype}")
            if arr.shape != want:
                raise ValueError(f"state {key!r} of block {i} (shape {shape}) has shape "
                                 f"{arr.shape}, expected {want}")
            out[key] = arr
        return out

    def _checked_block(self, i, block):
        """Block ``i``'s arrays checked for values: finite, and non-negative statistics."""
        shape = self.shapes[i]
        for key, arr in block.items():
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"state {key!r} of block {i} (shape {shape}) holds NaN or inf")
            if key != "m" and np.any(arr < 0):
                raise ValueError(f"state {key!r} of block {i} (shape {shape}) holds negative "
                                 "values; second-moment statistics are non-negative")
        return block


def _one_dtype(arrays):
    """The one float dtype of every saved array (ValueError naming one that differs)."""
    first = next((i, key, a.dtype) for i, block in enumerate(arrays)
                 for key, a in block.items())
    i0, key0, dtype = first
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"state arrays must be float32 or float64, got {dtype} "
                        f"(state {key0!r} of block {i0})")
    for i, block in enumerate(arrays):
        for key, a in block.items():
            if a.dtype != dtype:
                raise ValueError(f"state {key!r} of block {i} is {a.dtype}, the others are "
                                 f"{dtype} (from state {key0!r} of block {i0}); all state "
                                 "arrays must share one dtype")
    return dtype
