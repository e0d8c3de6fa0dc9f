"""The delta-rule ops in fla's conventions: scale, the L2-norm option, per-sequence initial and
final states with cu_seqlens, against a float64 loop of the rule."""

import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import ops

from .helpers import assert_close, normal

B, T, H, K, V = 1, 21, 2, 4, 3
CU = (0, 7, 8, 21)


def _rule(q, k, v, beta, g, scale, h0):
    """S ← Diag(exp g) S; u = β (v - Sᵀk); S ← S + k uᵀ; o = scale · Sᵀ q (float64)."""
    S = np.zeros((q.shape[0], H, K, V)) if h0 is None else h0.copy()
    outs = []
    for t in range(q.shape[1]):
        if g is not None:
            a = np.exp(g[:, t])
            S = (a[..., None] if a.ndim == 3 else a[..., None, None]) * S
        u = beta[:, t, :, None] * (v[:, t] - np.einsum("bhk,bhkv->bhv", k[:, t], S))
        S = S + k[:, t, :, :, None] * u[:, :, None, :]
        outs.append(scale * np.einsum("bhk,bhkv->bhv", q[:, t], S))
    return np.stack(outs, 1), S


def _inputs(seed):
    rng = np.random.default_rng(seed)
    return dict(
        q=normal(rng, B, T, H, K), k=normal(rng, B, T, H, K), v=normal(rng, B, T, H, V),
        beta=rng.uniform(0.1, 1.9, size=(B, T, H)),
        g_scalar=-rng.uniform(0, 5, size=(B, T, H)), g_key=-rng.uniform(0, 5, size=(B, T, H, K)),
    )  # fmt: skip


def _call(name, p, **kw):
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    args = [f(p["q"]), f(p["k"]), f(p["v"])]
    if name == "gated_delta_rule":
        args.append(f(p["g_scalar"]))
    elif name == "kda":
        args.append(f(p["g_key"]))
    return getattr(ops, name)(*args, f(p["beta"]), **kw)


def _gate(name, p):
    return {"delta_rule": None, "gated_delta_rule": p["g_scalar"], "kda": p["g_key"]}[name]


def _l2(x):
    return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) + 1e-6)


@pytest.mark.parametrize("backend", ["reference", "chunked"])
@pytest.mark.parametrize("name", ["delta_rule", "gated_delta_rule", "kda"])
def test_l2_norm_scale_and_final_state(name, backend):
    p = _inputs(0)
    o, ht = _call(name, p, scale=0.7, output_final_state=True, use_qk_l2norm_in_kernel=True,
                  backend=backend, chunk_size=8)  # fmt: skip
    o_ref, ht_ref = _rule(_l2(p["q"]), _l2(p["k"]), p["v"], p["beta"], _gate(name, p), 0.7, None)
    assert_close(o, o_ref, f"{name} output")
    assert_close(ht, ht_ref, f"{name} final state")
    assert _call(name, p)[1] is None  # no final state unless asked


@pytest.mark.parametrize("backend", ["reference", "chunked"])
@pytest.mark.parametrize("name", ["delta_rule", "gated_delta_rule", "kda"])
def test_cu_seqlens_gives_per_sequence_states(name, backend):
    p = _inputs(1)
    p["k"] = _l2(p["k"])
    N = len(CU) - 1
    h0 = normal(np.random.default_rng(2), N, H, K, V)
    o, ht = _call(name, p, initial_state=jnp.asarray(h0, jnp.float32), output_final_state=True,
                  cu_seqlens=jnp.asarray(CU), backend=backend, chunk_size=8)  # fmt: skip
    assert ht.shape == (N, H, K, V)
    gate = _gate(name, p)
    for n in range(N):
        a, b = CU[n], CU[n + 1]
        sl = {x: p[x][:, a:b] for x in ("q", "k", "v", "beta")}
        g = None if gate is None else gate[:, a:b]
        o_ref, ht_ref = _rule(sl["q"], sl["k"], sl["v"], sl["beta"], g, K**-0.5, h0[n : n + 1])
        assert_close(o[:, a:b], o_ref, f"{name} sequence {n}")
        assert_close(ht[n : n + 1], ht_ref, f"{name} sequence {n} final state")


def test_bad_arguments_name_the_problem():
    z = lambda *s: jnp.zeros(s)  # noqa: E731
    with pytest.raises(ValueError, match="gated_delta_rule: g must be"):
        ops.gated_delta_rule(z(B, T, H, K), z(B, T, H, K), z(B, T, H, V), z(B, T, H, K), z(B, T, H))
    with pytest.raises(ValueError, match="kda: g must be"):
        ops.kda(z(B, T, H, K), z(B, T, H, K), z(B, T, H, V), z(B, T, H), z(B, T, H))
    with pytest.raises(ValueError, match="batch must be 1"):
        ops.delta_rule(z(2, T, H, K), z(2, T, H, K), z(2, T, H, V), z(2, T, H), cu_seqlens=CU)
    with pytest.raises(ValueError, match=r"initial_state must be \[N,H,K,V\]"):
        ops.delta_rule(z(1, T, H, K), z(1, T, H, K), z(1, T, H, V), z(1, T, H),
                       initial_state=z(2, H, K, V), cu_seqlens=CU)  # fmt: skip
