"""Interrupts: a step taken whole, and a run that ends with what it reached.

Ctrl-C raises ``KeyboardInterrupt`` between two Python operations, so a step over
several blocks could stop half-way (some blocks updated, others not, ``t`` either).
:class:`held_interrupt` holds it until the step is complete. A run (``minimize``,
``least_squares``, ``minimize_stochastic``) that meets an interrupt or an exception in
the user's code ends with the last iterate it reached: :data:`INTERRUPTED` and
:func:`conclude` say how.
"""

import signal
import threading

try:  # the C module under ``signal``: its calls skip the enum conversions, ~10x faster
    import _signal as _sig
except ImportError:  # pragma: no cover - another interpreter
    _sig = signal

_SIGINT = int(signal.SIGINT)

#: The status of a run ended by ``KeyboardInterrupt`` (or by an exception in the user's
#: code, which is then raised again with the result attached).
INTERRUPTED = 98


def status_message(messages, status, error):
    """The result's message: ``messages[status]``, or for :data:`INTERRUPTED` one
    naming the exception that ended the run."""
    if status == INTERRUPTED:
        return f"Interrupted by {type(error).__name__}; x is the last iterate reached."
    return messages[status]


class held_interrupt:
    """Context manager: a SIGINT that arrives inside is raised (as ``KeyboardInterrupt``)
    when the block is left, not in the middle of it.

    Only Python's own SIGINT handler in the main thread is replaced (signal handlers run
    in the main thread only; a handler the program installed is left alone). Swapping
    the handler costs two system calls (about a microsecond), once per step.
    """

    __slots__ = ("_old", "_pending")

    def __enter__(self):
        self._old = self._pending = None
        if (threading.current_thread() is threading.main_thread()
                and _sig.getsignal(_SIGINT) is signal.default_int_handler):
            self._old = _sig.signal(_SIGINT, self._hold)
        return self

    def _hold(self, signum, frame):
        self._pending = (signum, frame)

    def __exit__(self, *exc_info):
        if self._old is None:
            return False
        _sig.signal(_SIGINT, self._old)
        if self._pending is not None:
            self._old(*self._pending)  # raises KeyboardInterrupt here, after the step
        return False


def conclude(result, error, where):
    """``result``, or (after an exception in the user's code) that exception raised
    again with the result attached as its ``optimize_result`` attribute and a note.

    A run ended by ``KeyboardInterrupt`` returns its result (status
    :data:`INTERRUPTED`); any other exception is the user's to see, and the progress is
    kept on it.
    """
    if error is None or isinstance(error, KeyboardInterrupt):
        return result
    try:
        error.optimize_result = result
        where_kept = "its `optimize_result` attribute"
    except AttributeError:  # an exception type with __slots__
        where_kept = None
    if where_kept is not None:
        error.add_note(f"{where} stopped after {result.nit} iterations; the last iterate "
                       f"reached, with its evaluation, is in {where_kept} (an OptimizeResult).")
    raise error
