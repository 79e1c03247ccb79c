"""The batch side of :func:`fastfactor.minimize_stochastic`: where batches come from.

``_Minibatches`` is the object :func:`fastfactor.minibatches` returns (shuffled row
batches of arrays, re-iterable once per epoch); ``_Stream`` draws batches for the loop
from an iterable (one pass per epoch) or a sampler ``rng -> batch`` and counts epochs,
raising ``_DataEnd`` when the data is used up.
"""

import numpy as np

from .._options import positive_int


class _Minibatches:
    def __init__(self, arrays, batch_size, shuffle, seed, drop_last):
        if not arrays:
            raise TypeError("minibatches needs at least one array, e.g. "
                            "minibatches(A, b, batch_size=256)")
        self.arrays = [np.asarray(a) for a in arrays]
        rows = {a.shape[0] if a.ndim else None for a in self.arrays}
        if None in rows:
            raise ValueError("minibatches needs arrays with rows (ndim >= 1), got a scalar")
        if len(rows) != 1:
            raise ValueError(f"the arrays must have the same number of rows, got "
                             f"{[a.shape[0] for a in self.arrays]}")
        self.rows = rows.pop()
        if self.rows == 0:
            raise ValueError("the arrays have no rows")
        positive_int("batch_size", batch_size)
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.rng = np.random.default_rng(seed)
        if len(self) == 0:
            raise ValueError(f"batch_size={batch_size} with drop_last=True leaves no batch "
                             f"of {self.rows} rows")

    def __len__(self):
        full, rest = divmod(self.rows, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __repr__(self):
        shapes = ", ".join(str(a.shape) for a in self.arrays)
        return f"minibatches({shapes}, batch_size={self.batch_size}, shuffle={self.shuffle})"

    def __iter__(self):
        order = self.rng.permutation(self.rows) if self.shuffle else None
        for k in range(len(self)):
            lo = k * self.batch_size
            hi = min(lo + self.batch_size, self.rows)
            if order is None:
                parts = [a[lo:hi] for a in self.arrays]
            else:
                idx = np.sort(order[lo:hi])  # sorted: the same rows, gathered in memory order
                parts = [a[idx] for a in self.arrays]
            yield parts[0] if len(parts) == 1 else tuple(parts)


class _DataEnd(Exception):
    """The batches are used up (epochs complete, or a one-shot iterator exhausted)."""


class _Stream:
    """Batches from an iterable (one pass per epoch) or a sampler ``rng -> batch``."""

    def __init__(self, batches, seed, per_epoch):
        self.batches = batches
        self.sampler = callable(batches) and not hasattr(batches, "__iter__")
        if self.sampler:
            self.rng = np.random.default_rng(seed)
            self.length = per_epoch
        else:
            try:
                self.it = iter(batches)
            except TypeError:
                raise TypeError(
                    "batches must be an iterable of batches (a list, "
                    "fastfactor.minibatches(...), a data loader) or a callable sampler "
                    f"rng -> batch, got {type(batches).__name__}") from None
            if per_epoch is not None:
                raise ValueError("batches_per_epoch is for a sampler; an iterable's epoch "
                                 "is one pass over it")
            self.reiterable = self.it is not batches
            self.length = len(batches) if self.reiterable and hasattr(batches, "__len__") else None
        self.epochs_done = 0
        self.drawn = 0  # batches drawn in the current epoch

    def next(self, max_epochs):
        if self.sampler:
            if max_epochs is not None and self.epochs_done >= max_epochs:
                raise _DataEnd
            batch = self.batches(self.rng)
            self.drawn += 1
            if self.length is not None and self.drawn == self.length:
                self.epochs_done += 1
                self.drawn = 0
            return batch
        for _ in range(2):
            try:
                batch = next(self.it)
            except StopIteration:
                if self.drawn == 0:
                    if self.epochs_done == 0:
                        raise ValueError("batches yielded no batch: give at least one") from None
                    raise ValueError(
                        f"batches yielded no batch in epoch {self.epochs_done + 1}: an "
                        "iterable must yield its batches again at each iter() (a list, or "
                        "an object whose __iter__ starts over)") from None
                self.epochs_done += 1
                self.drawn = 0
                done = max_epochs is not None and self.epochs_done >= max_epochs
                if not self.reiterable or done:
                    raise _DataEnd from None
                self.it = iter(self.batches)
                continue
            self.drawn += 1
            return batch
        raise AssertionError("unreachable")

    def completed_epochs(self):
        """Complete passes; a pass of known length counts as soon as its last batch is drawn."""
        done = self.epochs_done
        if not self.sampler and self.length is not None and self.drawn == self.length:
            done += 1
        return done
