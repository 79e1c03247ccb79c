"""Progress of a long least-squares phase (``verbose=2``): a tqdm bar where tqdm is
installed, else a line about once a second, so that a fit of minutes is not silent."""

import sys
import time

#: Seconds between two progress lines without tqdm.
INTERVAL = 1.0


class Progress:
    """Reports ``update(nit, cost, optimality, nfev)`` of a phase of ``total`` iterations."""

    def __init__(self, phase, total, stream=None):
        self.phase, self.total = phase, total
        self.stream = sys.stdout if stream is None else stream
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
            print(f"{phase} phase: up to {total} iterations", file=self.stream)
            self.next = time.monotonic() + INTERVAL
        else:
            self.bar = tqdm(total=total, desc=phase, unit="it", file=self.stream,
                            mininterval=INTERVAL / 4)
        self.done = 0

    def update(self, nit, cost, optimality, nfev):
        if self.bar is not None:
            self.bar.update(nit - self.done)
            self.done = nit
            if self.bar.n == nit and nit % 16 == 1:  # postfix formatting is not free
                self.bar.set_postfix(cost=f"{cost:.4e}", optimality=f"{optimality:.2e}",
                                     refresh=False)
            return
        now = time.monotonic()
        if now >= self.next:
            self.next = now + INTERVAL
            print(f"{self.phase}: iteration {nit:>8d}  cost {cost:.6e}  optimality "
                  f"{optimality:.2e}  nfev {nfev}", file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
