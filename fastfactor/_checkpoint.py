"""The stepper's state out and in: ``state_dict``/``load_state_dict`` (plain dicts) and
``save_state``/``load_state`` (``.npz`` checkpoints read without pickle), each checked
whole before anything changes. ``Adafactor`` takes these methods from ``StateIO``."""

import json
import numbers

import numpy as np

from ._blocks import FLOAT_DTYPES, block_size


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

        The shapes and the factoring must match this optimizer's; the
        hyper-parameters are this optimizer's own (not taken from ``state``).
        Everything is checked before anything changes: a state that is refused
        (``ValueError``/``TypeError``) leaves this optimizer as it was.
        """
        with self._lock:
            self._load_state_dict(state)

    def _load_state_dict(self, state):
        for key in ("t", "shapes", "blocks"):
            if key not in state:
                raise ValueError(f"state lacks {key!r}; pass a dict from state_dict()")
        shapes = [tuple(s) for s in state["shapes"]]
        if shapes != self.shapes:
            raise ValueError(f"state is for shapes {shapes}, this optimizer has {self.shapes}")
        t = state["t"]
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0:
            raise ValueError(f"state['t'] must be a non-negative integer, got {t!r}")
        blocks = state["blocks"]
        if t == 0 or not blocks:
            self._t, self._state, self._dtype = int(t), None, None
            return
        if len(blocks) != len(self.shapes):
            raise ValueError(f"state has {len(blocks)} blocks, this optimizer has "
                             f"{len(self.shapes)}")
        dtype = np.asarray(blocks[0]["row" if self.factored[0] else "v"]).dtype
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"state arrays must be float32 or float64, got {dtype}")
        checked = [self._checked_block(shape, factored, saved, dtype)
                   for shape, factored, saved in zip(self.shapes, self.factored, blocks,
                                                     strict=True)]
        self._allocate(dtype)
        for st, arrays in zip(self._state, checked, strict=True):
            for key, arr in arrays.items():
                self.backend.copy_into(getattr(st, key), arr)
        self._t = int(t)

    def _checked_block(self, shape, factored, saved, dtype):
        """The arrays of one saved block, checked: ``{field: array in dtype}``."""
        sizes = {"row": block_size(shape[:-1]), "col": block_size(shape[:-2] + shape[-1:])} \
            if factored else {"v": block_size(shape)}
        if self.hyper.beta1 is not None:
            sizes["m"] = block_size(shape)
        out = {}
        for key, size in sizes.items():
            if key not in saved:
                raise ValueError(f"state block for shape {shape} lacks {key!r}")
            arr = np.asarray(saved[key])
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"state {key!r} of block {shape} must hold real numbers, "
                                f"got dtype {arr.dtype}")
            if arr.size != size:
                raise ValueError(f"state {key!r} of block {shape} has {arr.size} elements, "
                                 f"expected {size}")
            arr = arr.astype(dtype, copy=False)
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"state {key!r} of block {shape} holds NaN or inf")
            if key != "m" and np.any(arr < 0):
                raise ValueError(f"state {key!r} of block {shape} holds negative values; "
                                 "second-moment statistics are non-negative")
            out[key] = arr
        return out
