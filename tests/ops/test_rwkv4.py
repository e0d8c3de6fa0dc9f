"""`rwkv4_wkv` against its definition in float64: values, gradients, continuation through the state,
packing, and finiteness where the plain exponential form overflows."""

import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import ops

from . import oracle
from .helpers import assert_close, assert_grads_close, normal

B, T, C = 2, 23, 5
BACKENDS = ("associative", "reference")


def _inputs(seed, k_scale=1.0, w=None):
    rng = np.random.default_rng(seed)
    return dict(
        w=rng.uniform(0.05, 2.0, size=C) if w is None else np.full(C, w),
        u=normal(rng, C),
        k=normal(rng, B, T, C, scale=k_scale),
        v=normal(rng, B, T, C),
    )


def _run(p, **kw):
    return ops.rwkv4_wkv(*(jnp.asarray(p[n], jnp.float32) for n in ("w", "u", "k", "v")), **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_match_the_definition(backend):
    p = _inputs(0)
    y, _ = _run(p, backend=backend)
    assert_close(y, oracle.rwkv4(np, p["w"], p["u"], p["k"], p["v"]), "wkv")


@pytest.mark.parametrize(
    "backend", ["reference", pytest.param("associative", marks=pytest.mark.slow)]
)
def test_gradients_of_every_input(backend):
    p = _inputs(1)
    weights = [normal(np.random.default_rng(2), B, T, C)]
    assert_grads_close(
        lambda w, u, k, v: (ops.rwkv4_wkv(w, u, k, v, backend=backend)[0],),
        lambda w, u, k, v: (oracle.rwkv4(jnp, w, u, k, v),),
        p,
        weights,
        f"rwkv4_wkv/{backend}",
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("w", [20.0, -20.0, 0.0], ids=["decay20", "growth20", "nodecay"])
def test_finite_and_exact_for_large_keys_and_extreme_decays(backend, w):
    p = _inputs(3, w=w)
    p["k"] = p["k"] + 30.0
    p["k"][:, 5] = 95.0  # exp(95) overflows float32
    y, state = _run(p, backend=backend)
    assert np.all(np.isfinite(np.asarray(y))) and all(np.all(np.isfinite(s)) for s in state)
    assert_close(y, oracle.rwkv4(np, p["w"], p["u"], p["k"], p["v"]), f"wkv at w={w}")
    with np.errstate(over="ignore"):  # the plain form's terms e^{-(t-1-i)w + k_i} in float32
        t, i = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
        lag = np.where(i < t, t - 1 - i, 0).astype(np.float32)[None, :, :, None]
        terms = np.exp(np.float32(-w) * lag + p["k"].astype(np.float32)[:, None])
    assert not np.all(np.isfinite(terms))


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_continues_a_sequence_exactly(backend):
    p = _inputs(4)
    whole, state_whole = _run(p, backend=backend)
    cut = 9
    first = {**p, "k": p["k"][:, :cut], "v": p["v"][:, :cut]}
    second = {**p, "k": p["k"][:, cut:], "v": p["v"][:, cut:]}
    y1, state = _run(first, backend=backend)
    y2, state_end = _run(second, backend=backend, state=state)
    assert_close(jnp.concatenate([y1, y2], axis=1), whole, "split run")
    num = lambda s: np.asarray(s[0]) * np.exp(np.asarray(s[2], np.float64))  # noqa: E731
    assert_close(num(state_end), num(state_whole), "carried numerator")


def test_segment_ids_restart_the_sums():
    p = _inputs(5)
    ids = np.repeat([[0] * 10 + [1] * 13], B, axis=0)
    y, _ = _run(p, segment_ids=jnp.asarray(ids))
    for lo, hi in ((0, 10), (10, T)):
        ref = oracle.rwkv4(np, p["w"], p["u"], p["k"][:, lo:hi], p["v"][:, lo:hi])
        assert_close(y[:, lo:hi], ref, f"segment {lo}:{hi}")


def test_one_token_step_equals_the_scan():
    p = _inputs(6)
    whole, _ = _run(p)
    state, ys = None, []
    for t in range(T):
        step = {**p, "k": p["k"][:, t : t + 1], "v": p["v"][:, t : t + 1]}
        y, state = _run(step, state=state)
        ys.append(y)
    assert_close(jnp.concatenate(ys, axis=1), whole, "token by token")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(w=jnp.zeros(4)), r"w must have shape \[C\]"),
        (dict(v=jnp.zeros((B, T + 1, C))), "v must have shape"),
        (dict(state=(jnp.zeros((B, C)),) * 2), "state must be"),
        (dict(backend="chunked"), "unknown backend"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    args = dict(w=jnp.zeros(C), u=jnp.zeros(C), k=jnp.zeros((B, T, C)), v=jnp.zeros((B, T, C)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ops.rwkv4_wkv(**args)
