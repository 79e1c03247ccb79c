"""The user's callback, in both of SciPy's forms, behind one call."""

import inspect

from scipy.optimize import OptimizeResult


def wants_intermediate_result(callback):
    """SciPy's rule: the new callback form has the single parameter ``intermediate_result``."""
    try:
        params = inspect.signature(callback).parameters
    except (TypeError, ValueError):
        return False
    return set(params) == {"intermediate_result"}


class Callback:
    """``callback(intermediate_result)`` or ``callback(xk)``; raising ``StopIteration``
    in it asks the run to stop.

    ``callback(xk, fields)`` calls the user's function with ``xk`` (a copy the user may
    keep) and, in the new form, ``OptimizeResult(x=xk, **fields())``: ``fields`` is a
    function, so that the copies it makes are only made for the form that uses them.
    Returns True when the user asked to stop.
    """

    def __init__(self, callback):
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self.fn = callback
        self.new_form = wants_intermediate_result(callback)

    def __call__(self, xk, fields):
        try:
            if self.new_form:
                self.fn(intermediate_result=OptimizeResult(x=xk, **fields()))
            else:
                self.fn(xk)
        except StopIteration:
            return True
        return False


def as_callback(callback):
    """A :class:`Callback`, or None for no callback."""
    return None if callback is None else Callback(callback)
