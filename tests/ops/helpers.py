"""Shared pieces of the op tests: backends, random inputs, float64 reference gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# Every backend an op passes through to eos_scan (pallas is covered by tests/eos; interpreted on
# CPU it is too slow for these sweeps). chunk_size 8 makes T = 19 cross two chunk boundaries.
# The default run takes the sequential reference and the chunked form (what `auto` picks on CPU);
# associative and auto itself run with `-m slow`.
BACKENDS = (
    "reference",
    "chunked",
    pytest.param("associative", marks=pytest.mark.slow),
    pytest.param("auto", marks=pytest.mark.slow),
)
RTOL = 1e-5


def backend_kwargs(backend: str) -> dict:
    return {"backend": backend, **({"chunk_size": 8} if backend == "chunked" else {})}


def normal(rng, *shape, scale=1.0):
    return scale * rng.normal(size=shape)


def log_gates(rng, *shape, strong=False):
    """Log forget gates: logsigmoid of a normal (moderate) or uniform in [-12, -5] (strong)."""
    if strong:
        return rng.uniform(-12.0, -5.0, size=shape)
    return -np.log1p(np.exp(-rng.normal(size=shape) - 1.0))


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def assert_close(got, want, what: str, rtol: float = RTOL):
    err = rel_err(got, want)
    assert err <= rtol, f"{what}: relative error {err:.2e} > {rtol:.0e}"


def weighted_loss(outputs, weights):
    """Σ_j Σ outputs[j] · weights[j] over the outputs that are not None."""
    total = 0.0
    for out, w in zip(outputs, weights, strict=True):
        if out is not None:
            total = total + jnp.sum(out * w)
    return total


def reference_grads(oracle_fn, params: dict, weights):
    """jax.grad of `oracle_fn(**params) -> outputs` under float64, as NumPy arrays."""
    with jax.enable_x64(True):
        p64 = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        w64 = [None if w is None else jnp.asarray(w, jnp.float64) for w in weights]
        loss = lambda p: weighted_loss(oracle_fn(**p), w64)  # noqa: E731
        value, grads = jax.value_and_grad(loss)(p64)
        return float(value), {k: np.asarray(g) for k, g in grads.items()}


def op_grads(op_fn, params: dict, weights):
    p32 = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    w32 = [None if w is None else jnp.asarray(w, jnp.float32) for w in weights]
    grads = jax.grad(lambda p: weighted_loss(op_fn(**p), w32))(p32)
    return {k: np.asarray(g) for k, g in grads.items()}


def assert_grads_close(op_fn, oracle_fn, params, weights, what, rtol=RTOL):
    _, want = reference_grads(oracle_fn, params, weights)
    got = op_grads(op_fn, params, weights)
    for name in params:
        assert_close(got[name], want[name], f"{what}: d/d{name}", rtol)
