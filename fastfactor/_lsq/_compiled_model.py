"""``numba.njit`` models of :func:`fastfactor.curve_fit` as compiled residuals.

``curve_fit`` wraps the model ``f(xdata, *p)`` and its Jacobian into closures of ``p``;
where both are ``numba.njit`` functions, :func:`compiled_problem` builds compiled
wrappers instead (the data enter as ``args``), so that ``least_squares`` can run its
Adafactor phase compiled. They compute what the closures compute, to the bit; anything
else keeps the closures.
"""

import sys

import numpy as np


def solve(least_squares, resid, p0, bounds, kwargs, compiled):
    """``least_squares``'s result on the compiled wrappers ``compiled`` (``(resid, jac,
    args)`` or None), or on the Python closures (``resid``, ``kwargs['jac']``)."""
    if compiled is not None:
        cresid, cjac, args = compiled
        try:
            return least_squares(cresid, p0, bounds=bounds, args=args,
                                 **dict(kwargs, jac=cjac))
        except _Unlike:
            # values the closures' NumPy operations broadcast or refuse: the Python
            # closures give the user their result, or NumPy's error
            pass
    return least_squares(resid, p0, bounds=bounds, **kwargs)


class _Unlike(Exception):
    """Raised by the compiled wrappers for values of ``f`` or ``jac`` whose shape the
    Python closures would treat otherwise (broadcast, or refuse with NumPy's error):
    curve_fit then runs the Python closures, which give the user exactly that."""


#: The source of the wrappers for ``n`` parameters: Numba cannot call ``f(xdata, *p)``
#: on an array ``p``, so the call is spelled out. The operations and their order are
#: the Python closures' (``resid`` in curve_fit, ``_Whiten``), for bit-identical values.
_SOURCE = """
def resid(p, xdata, ydata, w):
    y = f(xdata, {params})
    if y.shape[0] != ydata.shape[0]:
        raise _Unlike("f returned another number of values than ydata holds")
    r = np.ravel(y - ydata)
    return {weighted_r}


def jac(p, xdata, ydata, w):
    J = user_jac(xdata, {params})
    if J.shape[0] != ydata.shape[0] or J.shape[1] != p.shape[0]:
        raise _Unlike("jac returned another shape than (m, n)")
    return {weighted_J}
"""

#: The whitening: ``w`` is ``_Whiten.inv`` as a float64 ``(m,)`` array (1 without
#: sigma, the shared value for a scalar one), so that every fit of the same data types
#: shares one compiled loop (a loop per ``args`` type costs some 20 s the first time):
#: ``1.0 * r`` is ``r`` and a scalar's product is its array's, to the bit. The Jacobian
#: (C-contiguous: ``_compile`` admits no other) is returned new, as ``_Residuals``
#: copies the closures'.
_WEIGHTED = ("w * r", "w[:, None] * J")

#: How many wrapper pairs are kept (each holds its compiled code), the oldest dropped
#: first.
WRAPPERS_KEPT = 32
_wrappers = {}  # (f, jac, n) -> (resid, jac): Numba dispatchers


def compiled_problem(f, jac, xdata, ydata, whiten, p0, kwargs):
    """``(resid, jac, args)``, the compiled wrappers of a ``numba.njit`` model ``f`` and
    Jacobian ``jac`` compiled for the data ``args = (xdata, ydata, w)``; None where the
    Python closures run: other functions or data, or anything that does not compile
    (the closures then give the user's result or error)."""
    # without Numba imported, f cannot be a Numba function (and Numba stays unloaded)
    if "numba" not in sys.modules or "kwargs" in kwargs:
        return None
    if kwargs.get("callback") is not None or kwargs.get("verbose", 0) >= 2:
        return None  # a rerun on the closures (see solve) would report twice
    from .._compiled._objective import is_compiled

    if (not (is_compiled(f) and is_compiled(jac)) or type(xdata) is not np.ndarray
            or ydata.ndim != 1 or p0.dtype != np.float64 or p0.size == 0):
        return None
    w = _weights(whiten, ydata.size)
    if w is None:
        return None
    # C-contiguous writable data (copied only where not): one args type, so one
    # compiled loop, for every fit with data of the same dtypes and ranks
    args = (np.require(xdata, requirements=["C", "W"]),
            np.require(ydata, requirements=["C", "W"]), w)
    try:
        wrappers = _compile(f, jac, p0.size, args)
    except Exception:
        # any failure to type or compile (Numba's errors are of several classes): the
        # Python closures raise the user's error, or run where Numba cannot
        return None
    return None if wrappers is None else (*wrappers, args)


def _weights(whiten, m):
    """``_Whiten`` ``whiten`` as the wrappers' float64 ``(m,)`` weights, or None for a
    whitening that stays in Python (a 2-D sigma)."""
    if whiten is None:
        return np.ones(m)
    inv = whiten.inv if whiten.chol is None else None
    # NumPy multiplies a float16 or float32 inv in float64: converting first is exact
    if inv is None or inv.dtype not in (np.float16, np.float32, np.float64):
        return None
    return np.ascontiguousarray(np.broadcast_to(inv.astype(np.float64), (m,)))


def _compile(f, jac, n, args):
    """The wrappers for ``n`` parameters compiled for ``args``' types, or None when
    ``f`` or ``jac`` returns another type than the one the wrappers are exact for."""
    import numba
    from numba.core import types

    data = tuple(numba.typeof(a) for a in args)
    call = (data[0],) + (types.float64,) * n  # the types the closures call f with
    # a Jacobian in another layout than C: the closures hand it on in the layout NumPy
    # gives it, and the trf finish's BLAS calls round differently for each layout
    if not (_returns(f, call, 1) and _returns(jac, call, 2, "C")):
        return None
    resid, jacobian = _wrappers_for(f, jac, n)
    signature = (types.Array(types.float64, 1, "C"),) + data  # p as least_squares passes it
    if not (_returns(resid, signature, 1, "C") and _returns(jacobian, signature, 2, "C")):
        return None
    return resid, jacobian


def _returns(g, argtypes, ndim, layout=None):
    """Whether the Numba function ``g`` compiles for ``argtypes`` to a float64 array of
    ``ndim`` dimensions (and ``layout``, unless None); other values keep the Python
    closures, which handle them."""
    from numba.core import types

    g.compile(argtypes)
    found = g.overloads.get(tuple(argtypes))
    rtype = None if found is None else found.signature.return_type
    return (isinstance(rtype, types.Array) and rtype.ndim == ndim
            and rtype.dtype == types.float64 and layout in (None, rtype.layout))


def _wrappers_for(f, jac, n):
    """The cached Numba dispatchers ``(resid, jac)`` of ``f`` and ``jac`` for ``n``
    parameters (compiled on first call)."""
    key = (f, jac, n)
    found = _wrappers.get(key)
    if found is None:
        found = _make_wrappers(f, jac, n)
        if len(_wrappers) >= WRAPPERS_KEPT:
            del _wrappers[next(iter(_wrappers))]
        _wrappers[key] = found
    return found


def _make_wrappers(f, jac, n):
    """New dispatchers of the wrappers' source for ``n`` parameters: ``f`` and ``jac``
    enter as globals, which Numba calls as compiled functions."""
    import numba

    from .._backends.cpu._jit import _DEFAULTS

    weighted_r, weighted_J = _WEIGHTED
    params = ", ".join(f"p[{i}]" for i in range(n))
    source = _SOURCE.format(params=params, weighted_r=weighted_r, weighted_J=weighted_J)
    namespace = {"np": np, "f": f, "user_jac": jac, "_Unlike": _Unlike}
    exec(compile(source, f"<fastfactor.curve_fit wrappers, {n} parameters>", "exec"),
         namespace)
    return (numba.njit(**_DEFAULTS)(namespace["resid"]),
            numba.njit(**_DEFAULTS)(namespace["jac"]))
