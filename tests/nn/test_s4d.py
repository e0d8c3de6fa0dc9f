"""The shared S4D-Lin piece: both users (the EOS layer `S4DDiagonal` and M2's `SSMConv`) keep
their initial values draw for draw and hand the core ΔΛ and B̄ equal to a float64 NumPy formula."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcsm_jax import catalogue
from lcsm_jax.layers.terms import Context
from lcsm_jax.m2.ssm import SSMConv
from lcsm_jax.nn import s4d

H, K, D, C = 2, 3, 4, 5
LO, HI = math.log(1e-3), math.log(1e-1)


def _discretize64(log_neg_re, im, log_dt):
    """(ΔΛ, B̄) in float64: Λ = -exp(log_neg_re) + i·im, B̄ = (exp(ΔΛ) - 1)/Λ."""
    lam = -np.exp(np.float64(log_neg_re)) + 1j * np.float64(im)
    dt_lam = np.exp(np.float64(log_dt)) * lam
    return dt_lam, np.expm1(dt_lam) / lam


def _randomise(module, names, seed):
    rng = np.random.default_rng(seed)
    for name in names:
        param = getattr(module, name)
        value = rng.uniform(-1.0, 1.0, param[...].shape)
        if name == "log_dt":
            value = LO + (value + 1) / 2 * (HI - LO)
        param[...] = jnp.asarray(value, param[...].dtype)


def _s4d_layer():
    return catalogue.build("s4d_core", embed_dim=H * D, rngs=nnx.Rngs(0), num_heads=H, expand_dim=K)


def test_init_is_draw_for_draw_the_former_one():
    # The former SSMConv init: u -> log_dt, then C's real and imaginary parts, one key each.
    op = SSMConv(C, state_dim=K, rngs=nnx.Rngs(0))
    rngs = nnx.Rngs(0)
    u = jax.random.uniform(rngs.params(), (C,), jnp.float32)
    c_re = math.sqrt(0.5) * jax.random.normal(rngs.params(), (K, C), jnp.float32)
    c_im = math.sqrt(0.5) * jax.random.normal(rngs.params(), (K, C), jnp.float32)
    np.testing.assert_array_equal(op.log_dt[...], LO + u * (HI - LO))
    np.testing.assert_array_equal(op.c_re[...], c_re)
    np.testing.assert_array_equal(op.c_im[...], c_im)
    np.testing.assert_array_equal(op.log_neg_re[...], np.full((K, C), np.float32(math.log(0.5))))
    np.testing.assert_array_equal(
        op.im[...], np.float32(np.pi * np.arange(K)[:, None] * np.ones(C))
    )
    # S4DDiagonal draws the same way over [H, K, D] (its Δ per channel: [H, 1, D]); B = 1.
    osc = _s4d_layer().oscillation
    rngs = nnx.Rngs(0)
    u = jax.random.uniform(rngs.params(), (H, 1, D), jnp.float32)
    c_re = math.sqrt(0.5) * jax.random.normal(rngs.params(), (H, K, D), jnp.float32)
    np.testing.assert_array_equal(osc.log_dt[...], LO + u * (HI - LO))
    np.testing.assert_array_equal(osc.c_re[...], c_re)
    np.testing.assert_array_equal(osc.im[...], np.broadcast_to(osc.im[...][:1, :, :1], (H, K, D)))
    np.testing.assert_array_equal(osc.im[0, :, 0], np.float32(np.pi * np.arange(K)))
    np.testing.assert_array_equal(osc.b_re[...], np.ones((H, K, D)))
    np.testing.assert_array_equal(osc.b_im[...], np.zeros((H, K, D)))


def test_log_dt_init_is_the_former_log_uniform_draw():
    key = jax.random.key(3)
    log_dt = s4d.log_dt_init(key, (1000,), 1e-3, 1e-1)
    u = jax.random.uniform(key, (1000,), jnp.float32)
    np.testing.assert_array_equal(jnp.exp(log_dt), jnp.exp(u * (HI - LO) + LO))  # the former
    assert LO <= float(log_dt.min()) and float(log_dt.max()) <= HI


def test_s4d_layer_hands_the_core_the_float64_discretisation():
    layer = _s4d_layer()
    osc = layer.oscillation
    _randomise(osc, ("log_dt", "log_neg_re", "im", "b_re", "b_im", "c_re", "c_im"), seed=0)
    x = jax.random.normal(jax.random.key(0), (1, 2, H * D))
    terms = layer.terms(x, Context(jnp.zeros((1, 2), jnp.int32), None, None))
    dt_lam, b_bar = _discretize64(osc.log_neg_re[...], osc.im[...], osc.log_dt[...])
    b = np.float64(osc.b_re[...]) + 1j * np.float64(osc.b_im[...])
    c = np.float64(osc.c_re[...]) + 1j * np.float64(osc.c_im[...])
    np.testing.assert_allclose(terms.log_o[0, 0], dt_lam, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(terms.fold[0, 0], b_bar * b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(terms.s[0, 0], c, rtol=1e-6, atol=1e-7)


def test_m2_ssm_kernel_terms_are_the_float64_discretisation():
    op = SSMConv(C, state_dim=K, rngs=nnx.Rngs(1))
    _randomise(op, ("log_dt", "log_neg_re", "im", "c_re", "c_im"), seed=1)
    log_o, read = op._terms()
    dt_lam, b_bar = _discretize64(op.log_neg_re[...], op.im[...], op.log_dt[...][None])
    c = np.float64(op.c_re[...]) + 1j * np.float64(op.c_im[...])
    np.testing.assert_allclose(log_o, dt_lam, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(read, c * b_bar, rtol=1e-5, atol=1e-7)
    # The materialised kernel k[d] = Re Σ_r C B̄ exp(d ΔΛ), in float64.
    d = np.arange(6)[:, None, None]
    kernel = np.sum((c * b_bar)[None] * np.exp(d * dt_lam[None]), axis=1).real
    np.testing.assert_allclose(op.kernel(6), kernel, rtol=1e-4, atol=1e-6)
