"""float64 inputs under `jax_enable_x64` are computed and accumulated in float64 by every backend
that can (all but pallas, which says so): outputs, final state and every gradient within 1e-12 of
the float64 loop. Narrower inputs keep float32 accumulation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import eos

from . import oracle

B, T, H, K, D = 2, 37, 2, 4, 3
BOUND = 1e-12
BACKENDS = ("reference", "associative", "chunked", "recurrent", "auto")


def _decay(structure, rng):
    """(user-facing log_o, dense [B,T,H,K,D] for the oracle)."""
    if structure == "scalar":
        lo = rng.uniform(-3.0, 0.0, (B, T, H, 1, 1))
    elif structure == "kwise":
        lo = rng.uniform(-12.0, 0.0, (B, T, H, K, 1))
    elif structure == "full":
        lo = rng.uniform(-2.0, 0.0, (B, T, H, K, D))
    else:  # separable
        k, d = rng.uniform(-2.0, 0.0, (B, T, H, K)), rng.uniform(-1.0, 0.0, (B, T, H, D))
        return eos.Decay(k=jnp.asarray(k), d=jnp.asarray(d)), k[..., None] + d[..., None, :]
    return jnp.asarray(lo), lo


def _relative(got, want):
    return float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("structure", ["scalar", "kwise", "separable", "full"])
def test_float64_inputs_match_the_float64_loop(structure, backend):
    if structure == "full" and backend == "chunked":
        pytest.skip("chunked does not take a full K×D decay")
    rng = np.random.default_rng(3)
    x = {n: rng.normal(size=shape) for n, shape in (
        ("e", (B, T, H, K)), ("i", (B, T, H, D)), ("s", (B, T, H, K)), ("m0", (B, H, K, D)),
        ("dy", (B, T, H, D)), ("dm", (B, H, K, D)),
    )}  # fmt: skip
    with jax.enable_x64(True):
        log_o, dense = _decay(structure, rng)
        seg = np.repeat([[0] * 20 + [1] * 17], B, axis=0)
        want_y, want_m = oracle.eos(x["e"], x["i"], dense, x["s"], x["m0"], seg)
        g = oracle.eos_vjp(x["e"], x["i"], dense, x["s"], x["m0"], seg, x["dy"], x["dm"])

        def run(lo, e, i, s, m0):
            return eos.eos_scan(
                e, i, lo, s, initial_state=m0, segment_ids=jnp.asarray(seg), backend=backend,
                chunk_size=8,
            )  # fmt: skip

        def loss(lo, e, i, s, m0):
            y, m = run(lo, e, i, s, m0)
            return jnp.sum(y * x["dy"]) + jnp.sum(m * x["dm"])

        args = (log_o, *(jnp.asarray(x[n]) for n in ("e", "i", "s", "m0")))
        y, m = jax.jit(run)(*args)
        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))(*args)
    assert y.dtype == m.dtype == jnp.float64
    assert _relative(y, want_y) <= BOUND and _relative(m, want_m) <= BOUND
    for got, key in zip(grads[1:], ("de", "di", "ds", "dm0"), strict=True):
        assert _relative(got, g[key]) <= BOUND, key
    dlo = g["dlog_o"]
    if structure == "separable":
        assert _relative(grads[0].k, dlo.sum(-1)) <= BOUND
        assert _relative(grads[0].d, dlo.sum(-2)) <= BOUND
    else:
        assert _relative(grads[0], oracle.unbroadcast(dlo, log_o.shape)) <= BOUND


@pytest.mark.parametrize("backend", BACKENDS)
def test_complex128_rotations_match_the_loop(backend):
    """Complex decays (rotations with a large phase per step) in complex128."""
    rng = np.random.default_rng(4)
    c = lambda *shape: rng.normal(size=shape) + 1j * rng.normal(size=shape)  # noqa: E731
    e, i, s, m0 = c(B, T, H, K), c(B, T, H, D), c(B, T, H, K), c(B, H, K, D)
    lo = rng.uniform(-1.0, 0.0, (B, T, H, K, 1)) + 1j * rng.uniform(-7.0, 7.0, (B, T, H, K, 1))
    want_y, want_m = oracle.eos(e, i, lo, s, m0)
    with jax.enable_x64(True):
        y, m = eos.eos_scan(
            *(jnp.asarray(a) for a in (e, i, lo, s)), initial_state=jnp.asarray(m0),
            backend=backend, chunk_size=8,
        )  # fmt: skip
    assert y.dtype == m.dtype == jnp.complex128
    assert _relative(y, want_y) <= BOUND and _relative(m, want_m) <= BOUND


def test_pallas_refuses_float64_and_auto_avoids_it():
    with jax.enable_x64(True):
        e = jnp.ones((1, 32, 1, 2), jnp.float64)  # T > dispatch.SHORT_T: not the short rule
        i = jnp.ones((1, 32, 1, 2), jnp.float64)
        with pytest.raises(ValueError, match="backend 'pallas' does not support float64"):
            eos.eos_scan(e, i, -0.5, e, backend="pallas")
        assert eos.explain(e, i, -0.5, e, platform="gpu").startswith("auto -> chunked ")
        assert eos.eos_scan(e, i, -0.5, e)[1].dtype == jnp.float64


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_narrow_inputs_keep_float32_accumulation(dtype):
    with jax.enable_x64(True):
        e = jnp.ones((1, 4, 1, 2), dtype)
        y, m = eos.eos_scan(e, e, jnp.float64(-0.5), e, backend="chunked")
    assert y.dtype == dtype and m.dtype == jnp.float32
