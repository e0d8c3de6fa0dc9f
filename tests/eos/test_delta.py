"""`eos.delta_scan` against a float64 loop of the delta rule: every backend × {no gate, scalar gate,
per-key gate} × T around the chunk size × initial state × segments, outputs, final states and
gradients of every input; per-segment states; stability under gates of -20 per step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import eos

B, H, K, V = 2, 2, 4, 3
C = 8  # chunk size of the tests, so T crosses chunk boundaries
TS = (1, C - 1, C, C + 1, 3 * C + 5)
# key: gates of 0..3 per step, on the chunked backend's midpoint path; key_strong: 2..12 per step,
# too strong to factor about a chunk's middle (its pairwise path).
GATES = ("none", "scalar", "key", "key_strong")
BACKENDS = ("reference", "chunked")
RTOL = 1e-5


def oracle(xp, q, k, v, beta, g, h0=None, ids=None, h0_seg=None):
    """S ← Diag(exp g_t) S; S ← S + β_t k_t (v_t - Sᵀk_t)ᵀ; o_t = Sᵀ q_t, one token at a time
    (the definition, written with `xp` = numpy or jax.numpy under float64). Rows restart at a
    change of `ids` from zeros, or from `h0_seg[id]` (B = 1); returns (o, S, {id: final S})."""
    Bq, T = q.shape[:2]
    S = xp.zeros((Bq, H, K, V)) if h0 is None else h0
    outs, finals = [], {}
    for t in range(T):
        if ids is not None and (t == 0 or np.any(ids[:, t] != ids[:, t - 1])):
            if h0_seg is not None:
                S = h0_seg[int(ids[0, t])][None]
            elif t > 0:
                keep = (ids[:, t] == ids[:, t - 1]).astype(np.float64)[:, None, None, None]
                S = S * keep
        if g is not None:
            a = xp.exp(g[:, t])
            S = (a[..., None] if a.ndim == 3 else a[..., None, None]) * S
        u = beta[:, t, :, None] * (v[:, t] - xp.einsum("bhk,bhkv->bhv", k[:, t], S))
        S = S + k[:, t, :, :, None] * u[:, :, None, :]
        outs.append(xp.einsum("bhk,bhkv->bhv", q[:, t], S))
        if ids is not None:
            finals[int(ids[0, t])] = S[0]
    return xp.stack(outs, axis=1), S, finals


def _inputs(T, gate, seed=0, strength=(0.0, 3.0), Bn=B):
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(Bn, T, H, K))
    g = None
    if gate == "key_strong":
        gate, strength = "key", (2.0, 12.0)
    if gate == "scalar":
        g = -rng.uniform(*strength, size=(Bn, T, H))
    elif gate == "key":
        g = -rng.uniform(*strength, size=(Bn, T, H, K))
    return dict(
        q=rng.normal(size=(Bn, T, H, K)),
        k=k / np.linalg.norm(k, axis=-1, keepdims=True),
        v=rng.normal(size=(Bn, T, H, V)),
        beta=rng.uniform(0.05, 1.95, size=(Bn, T, H)),  # β in (0, 2)
        g=g,
        h0=rng.normal(size=(Bn, H, K, V)),
    )


def _f32(p):
    return {n: None if x is None else jnp.asarray(x, jnp.float32) for n, x in p.items()}


def _rel(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def _ours(p, backend, **kw):
    return eos.delta_scan(
        p["q"], p["k"], p["v"], p["beta"], p["g"], initial_state=p.get("h0"), backend=backend,
        chunk_size=C, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("T", TS)
def test_outputs_and_final_state(T, gate, backend):
    p = _inputs(T, gate)
    o, S = _ours(_f32(p), backend)
    o_ref, S_ref, _ = oracle(np, p["q"], p["k"], p["v"], p["beta"], p["g"], p["h0"])
    assert o.shape == (B, T, H, V) and S.shape == (B, H, K, V) and S.dtype == jnp.float32
    assert _rel(o, o_ref) <= RTOL and _rel(S, S_ref) <= RTOL


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gate", GATES)
def test_gradients_of_every_input(gate, backend):
    T = 3 * C + 5
    p = _inputs(T, gate, seed=1)
    rng = np.random.default_rng(2)
    w_o, w_S = rng.normal(size=(B, T, H, V)), rng.normal(size=(B, H, K, V))
    names = [n for n in p if p[n] is not None]

    def loss(fn, params, w):
        o, S = fn(params)
        return jnp.sum(o * w[0]) + jnp.sum(S * w[1])

    def ref_fn(params):
        o, S, _ = oracle(jnp, *(params.get(n) for n in ("q", "k", "v", "beta", "g", "h0")))
        return o, S

    with jax.enable_x64(True):
        p64 = {n: jnp.asarray(p[n], jnp.float64) for n in names}
        want = jax.grad(lambda q: loss(ref_fn, q, (w_o, w_S)))(p64)
        want = {n: np.asarray(x) for n, x in want.items()}
    w32 = (jnp.asarray(w_o, jnp.float32), jnp.asarray(w_S, jnp.float32))
    full = lambda q: _ours({**{n: None for n in p}, **q}, backend)  # noqa: E731
    got = jax.grad(lambda q: loss(full, q, w32))({n: jnp.asarray(p[n], jnp.float32) for n in names})
    for n in names:
        err = _rel(got[n], want[n])
        assert err <= RTOL, f"d/d{n}: relative error {err:.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gate", GATES)
def test_segment_ids_restart_the_state(gate, backend):
    T = 3 * C + 5
    p = _inputs(T, gate, seed=3)
    ids = np.zeros((B, T), np.int32)
    ids[0, 6:] = 1  # a cut inside the first chunk
    ids[0, 17:] = 2
    ids[1, C:] = 5  # a cut on a chunk boundary
    o, S = _ours(_f32(p), backend, segment_ids=jnp.asarray(ids))
    o_ref, S_ref, _ = oracle(np, p["q"], p["k"], p["v"], p["beta"], p["g"], p["h0"], ids)
    assert _rel(o, o_ref) <= RTOL and _rel(S, S_ref) <= RTOL


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gate", GATES)
def test_per_segment_initial_and_final_states(gate, backend):
    T = 3 * C + 5
    p = _inputs(T, gate, seed=4, Bn=1)
    lengths = (5, 1, 11, T - 17)
    ids = np.repeat(np.arange(len(lengths)), lengths)[None].astype(np.int32)
    h0_seg = np.random.default_rng(5).normal(size=(len(lengths), H, K, V))
    o, S, finals = eos.delta_scan(
        *(jnp.asarray(p[n], jnp.float32) if p[n] is not None else None
          for n in ("q", "k", "v", "beta", "g")),
        segment_ids=jnp.asarray(ids), segment_initial_states=jnp.asarray(h0_seg, jnp.float32),
        return_segment_states=True, backend=backend, chunk_size=C,
    )  # fmt: skip
    o_ref, S_ref, finals_ref = oracle(
        np, p["q"], p["k"], p["v"], p["beta"], p["g"], None, ids, h0_seg
    )
    assert finals.shape == (len(lengths), H, K, V)
    assert _rel(o, o_ref) <= RTOL and _rel(S, S_ref) <= RTOL
    for n, want in finals_ref.items():
        assert _rel(finals[n], want) <= RTOL, f"segment {n}"


@pytest.mark.parametrize("gate", ["scalar", "key"])
def test_strong_gates_long_sequence_is_stable(gate):
    """T = 16384 with gates down to -20 per step: finite, and equal to the oracle."""
    T = 16384
    p = _inputs(T, gate, seed=6, strength=(0.0, 20.0), Bn=1)
    o, S = _ours(_f32(p), "chunked")
    o_ref, S_ref, _ = oracle(np, p["q"], p["k"], p["v"], p["beta"], p["g"], p["h0"])
    assert np.all(np.isfinite(np.asarray(o))) and np.all(np.isfinite(np.asarray(S)))
    assert _rel(o, o_ref) <= RTOL and _rel(S, S_ref) <= RTOL


def test_step_chained_equals_the_scan():
    T = C + 3
    p = _f32(_inputs(T, "key", seed=7))
    o, S = _ours(p, "chunked")
    state, outs = p["h0"], []
    for t in range(T):
        o_t, state = eos.delta_step(
            p["q"][:, t], p["k"][:, t], p["v"][:, t], p["beta"][:, t], p["g"][:, t], state
        )
        outs.append(o_t)
    assert _rel(jnp.stack(outs, 1), o) <= RTOL and _rel(state, S) <= RTOL


def test_float64_inputs_are_computed_in_float64():
    with jax.enable_x64(True):
        p = _inputs(2 * C + 3, "key", seed=8)
        for backend in BACKENDS:
            o, S = _ours({n: None if x is None else jnp.asarray(x) for n, x in p.items()}, backend)
            o_ref, S_ref, _ = oracle(np, p["q"], p["k"], p["v"], p["beta"], p["g"], p["h0"])
            assert o.dtype == jnp.float64 and S.dtype == jnp.float64
            assert _rel(o, o_ref) <= 1e-12 and _rel(S, S_ref) <= 1e-12, backend


def test_bf16_inputs_keep_the_dtype_and_a_float32_state():
    p = _inputs(C + 1, "scalar", seed=9)
    pb = {n: None if x is None else jnp.asarray(x, jnp.bfloat16) for n, x in p.items()}
    o, S = _ours(pb, "chunked")
    assert o.dtype == jnp.bfloat16 and S.dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(beta=jnp.zeros((B, 5))), r"beta must be \[B,T,H\]"),
        (dict(log_alpha=jnp.zeros((B, 5, H, 2))), "the log gate must be"),
        (dict(v=jnp.zeros((B, 6, H, V))), "v must be"),
        (dict(backend="associative"), "unknown backend"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(initial_state=jnp.zeros((B, H, V, K))), "initial_state must be"),
        (dict(segment_initial_states=jnp.zeros((2, H, K, V))), "per-segment states need B = 1"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    args = dict(
        q=jnp.zeros((B, 5, H, K)), k=jnp.zeros((B, 5, H, K)), v=jnp.zeros((B, 5, H, V)),
        beta=jnp.zeros((B, 5, H)),
    )  # fmt: skip
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        eos.delta_scan(**args)
