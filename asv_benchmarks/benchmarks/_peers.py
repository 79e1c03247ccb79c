"""Other Adafactor implementations, set up as close to Adafactor's defaults as they allow.

Each ``*_stepper(case, dtype)`` returns a warmed-up zero-argument step over the case's
blocks, and raises ``NotImplementedError`` when the package is not installed (asv then
skips the benchmark). The packages are imported here, inside the benchmark's own
process, never at module import.

Settings and their differences from fastfactor's defaults:

- ``torch.optim.Adafactor`` (torch >= 2.5): ``lr=1e-2`` (its rho_t is
  ``min(lr, 1/sqrt(t))``: the relative step), ``beta2_decay=-0.8``, ``d=1``,
  ``eps=(None, 1e-3)``, ``weight_decay=0``, ``foreach=False`` (single-tensor path; it is
  the CPU default). Differences: eps1 defaults to the dtype's machine epsilon and is a
  lower clamp on ``V`` (and on mean(R)), not a term added to ``g**2``; it builds ``V``
  as an ``n x m`` array.
- HF transformers' ``Adafactor``: ``lr=None, relative_step=True, scale_parameter=True,
  warmup_init=False, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8,
  beta1=None, weight_decay=0``: the same algorithm; it builds ``g**2 + eps1`` and ``U``
  as ``n x m`` arrays.
- ``optax.adafactor``, the whole step (update and ``apply_updates``) in one
  ``jax.jit`` with the parameters and state donated: ``learning_rate=min(1e-2,
  1/sqrt(t))`` as a schedule, ``min_dim_size_to_factor=1`` (optax's default 128 would
  leave small blocks unfactored), ``decay_rate=0.8`` (optax's sign convention),
  ``multiply_by_parameter_scale=True`` (its ``max(RMS(x), 1e-3)``), ``clipping_threshold=1``,
  ``momentum=None``, ``eps=1e-30``. Differences: optax factors over the two largest
  axes (the same as the last two for every case here). float64 runs with
  ``jax_enable_x64``.
"""

from ._common import arrays, cached, parse_case


def _need(module):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise NotImplementedError(f"{module} is not installed ({exc})") from None


def _torch_params(torch, case, dtype):
    xs, gs = arrays(case, dtype)
    params = []
    for x, g in zip(xs, gs, strict=True):
        p = torch.nn.Parameter(torch.from_numpy(x))     # shares x's memory
        p.grad = torch.from_numpy(g)
        params.append(p)
    return params


def torch_stepper(case, dtype):
    def build():
        torch = _need("torch")
        if not hasattr(torch.optim, "Adafactor"):
            raise NotImplementedError(f"torch {torch.__version__} has no torch.optim.Adafactor "
                                      "(needs >= 2.5)")
        params = _torch_params(torch, case, dtype)
        opt = torch.optim.Adafactor(params, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0,
                                    weight_decay=0.0, foreach=False)

        def step():
            opt.step()
        step()
        return step
    return cached(("torch", case, dtype), build)


def hf_stepper(case, dtype):
    def build():
        torch = _need("torch")
        optimization = _need("transformers.optimization")
        params = _torch_params(torch, case, dtype)
        opt = optimization.Adafactor(params, lr=None, eps=(1e-30, 1e-3), clip_threshold=1.0,
                                     decay_rate=-0.8, beta1=None, weight_decay=0.0,
                                     scale_parameter=True, relative_step=True, warmup_init=False)

        def step():
            opt.step()
        step()
        return step
    return cached(("hf", case, dtype), build)


def optax_stepper(case, dtype):
    def build():
        jax = _need("jax")
        optax = _need("optax")
        if dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        for shape in parse_case(case):
            if len(shape) == 3 and shape[0] > min(shape[1:]):
                raise NotImplementedError(f"optax would factor other axes of {shape}")
        xs, gs = arrays(case, dtype)
        params = [jnp.asarray(x) for x in xs]
        grads = [jnp.asarray(g) for g in gs]
        if params[0].dtype.name != dtype:
            raise NotImplementedError(f"jax holds {params[0].dtype} for {dtype} parameters")
        tx = optax.adafactor(
            learning_rate=lambda count: jnp.minimum(1e-2, 1.0 / jnp.sqrt(count + 1.0)),
            min_dim_size_to_factor=1, decay_rate=0.8, decay_offset=0,
            multiply_by_parameter_scale=True, clipping_threshold=1.0, momentum=None,
            eps=1e-30, factored=True)

        def update(p, s, g):
            updates, s = tx.update(g, s, p)
            return optax.apply_updates(p, updates), s

        jitted = jax.jit(update, donate_argnums=(0, 1))
        box = {"p": params, "s": tx.init(params)}

        def step():
            box["p"], box["s"] = jitted(box["p"], box["s"], grads)
            jax.block_until_ready(box["p"])
        step()
        step()
        return step
    return cached(("optax", case, dtype), build)


PEERS = {"torch": torch_stepper, "hf": hf_stepper, "optax": optax_stepper}

