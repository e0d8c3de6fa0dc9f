"""The fla-convention ops against float64 oracles of their equations: outputs, final states and
gradients of every input, for every backend, with initial states, strong gates and packing."""

import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import ops

from . import oracle
from .helpers import (
    BACKENDS,
    assert_close,
    assert_grads_close,
    backend_kwargs,
    log_gates,
    normal,
)

B, T, H, K, V = 2, 19, 2, 4, 3
SCALE = K**-0.5


def _inputs(seed, strong=False):
    rng = np.random.default_rng(seed)
    return dict(
        q=normal(rng, B, T, H, K),
        k=normal(rng, B, T, H, K),
        v=normal(rng, B, T, H, V),
        g=log_gates(rng, B, T, H, K, strong=strong),
        h0=normal(rng, B, H, K, V),
        u=normal(rng, H, K),
    )


def _retention_g():
    return np.log1p(-(2.0 ** (-5.0 - np.arange(H))))[None, None, :, None]


# name -> (op call on params p, oracle call on (xp, p)); every op with an initial state.
CASES = {
    "gla": (
        lambda p, kw: ops.gla(p["q"], p["k"], p["v"], p["g"], initial_state=p["h0"], **kw),
        lambda xp, p: oracle.gla(xp, p["q"], p["k"], p["v"], p["g"], SCALE, p["h0"]),
        ("q", "k", "v", "g", "h0"),
    ),
    "simple_gla": (
        lambda p, kw: ops.simple_gla(
            p["q"], p["k"], p["v"], p["g"][..., 0], initial_state=p["h0"], **kw
        ),
        lambda xp, p: oracle.gla(xp, p["q"], p["k"], p["v"], p["g"][..., :1], SCALE, p["h0"]),
        ("q", "k", "v", "g", "h0"),
    ),
    "retention": (
        lambda p, kw: ops.retention(p["q"], p["k"], p["v"], initial_state=p["h0"], **kw),
        lambda xp, p: oracle.gla(xp, p["q"], p["k"], p["v"], _retention_g(), SCALE, p["h0"]),
        ("q", "k", "v", "h0"),
    ),
    "linear_attn": (
        lambda p, kw: ops.linear_attn(p["q"], p["k"], p["v"], initial_state=p["h0"], **kw),
        lambda xp, p: oracle.gla(xp, p["q"], p["k"], p["v"], None, SCALE, p["h0"]),
        ("q", "k", "v", "h0"),
    ),
    "rwkv6": (
        lambda p, kw: ops.rwkv6(
            p["q"], p["k"], p["v"], p["g"], p["u"], initial_state=p["h0"], **kw
        ),
        lambda xp, p: oracle.gla(xp, p["q"], p["k"], p["v"], p["g"], SCALE, p["h0"], bonus=p["u"]),
        ("q", "k", "v", "g", "u", "h0"),
    ),
}


def _split(name, inputs):
    op, ref, names = CASES[name]
    return op, ref, {n: inputs[n] for n in names}


@pytest.mark.parametrize("strong", [False, True], ids=["moderate", "strong"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_outputs_and_final_state(name, backend, strong):
    op, ref, p = _split(name, _inputs(0, strong))
    o, ht = op({k: jnp.asarray(v, jnp.float32) for k, v in p.items()}, {
        "output_final_state": True, **backend_kwargs(backend)
    })  # fmt: skip
    o_ref, ht_ref = ref(np, p)
    assert o.shape == (B, T, H, V) and o.dtype == jnp.float32
    assert_close(o, o_ref, f"{name} output")
    assert_close(ht, ht_ref, f"{name} final state")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_gradients(name, backend):
    op, ref, p = _split(name, _inputs(1))
    rng = np.random.default_rng(2)
    weights = [normal(rng, B, T, H, V), normal(rng, B, H, K, V)]
    kw = {"output_final_state": True, **backend_kwargs(backend)}
    assert_grads_close(
        lambda **q: op(q, kw), lambda **q: ref(jnp, q), p, weights, f"{name}/{backend}"
    )


@pytest.mark.parametrize("backend", ["reference", "chunked"])
def test_gradients_under_strong_gates(backend):
    op, ref, p = _split("gla", _inputs(1, strong=True))
    rng = np.random.default_rng(2)
    weights = [normal(rng, B, T, H, V), normal(rng, B, H, K, V)]
    kw = {"output_final_state": True, **backend_kwargs(backend)}
    assert_grads_close(
        lambda **q: op(q, kw), lambda **q: ref(jnp, q), p, weights, f"strong gla/{backend}"
    )


def test_final_state_is_none_unless_asked():
    p = {k: jnp.asarray(v, jnp.float32) for k, v in _inputs(0).items()}
    assert ops.gla(p["q"], p["k"], p["v"], p["g"])[1] is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_segment_ids_restart_the_state(backend):
    p = _inputs(3)
    ids = np.repeat([[0] * 7 + [1] * 5 + [2] * 7], B, axis=0)
    ids[1] = [0] * 12 + [3] * 7
    o, ht = ops.gla(
        *(jnp.asarray(p[n], jnp.float32) for n in ("q", "k", "v", "g")),
        initial_state=jnp.asarray(p["h0"], jnp.float32),
        output_final_state=True,
        segment_ids=jnp.asarray(ids),
        **backend_kwargs(backend),
    )
    o_ref, ht_ref = oracle.gla(np, p["q"], p["k"], p["v"], p["g"], SCALE, p["h0"], ids)
    assert_close(o, o_ref, "segmented output")
    assert_close(ht, ht_ref, "segmented final state")


CU = (0, 6, 7, 19)  # three packed sequences, one of length 1


def _packed_reference(name, p, lo, hi, h0):
    sl = {n: p[n][:, lo:hi] for n in ("q", "k", "v", "g")}
    if name == "rwkv6":
        return oracle.gla(np, sl["q"], sl["k"], sl["v"], sl["g"], SCALE, h0, bonus=p["u"])
    g = {"gla": sl["g"], "simple_gla": sl["g"][..., :1], "retention": _retention_g()}
    return oracle.gla(np, sl["q"], sl["k"], sl["v"], g.get(name), SCALE, h0)


@pytest.mark.parametrize(
    "backend, strong",
    [
        ("reference", False),
        ("chunked", True),
        pytest.param("reference", True, marks=pytest.mark.slow),
        pytest.param("chunked", False, marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("name", list(CASES))
def test_cu_seqlens_gives_per_sequence_states(name, backend, strong):
    rng = np.random.default_rng(4)
    p = {n: x[:1] for n, x in _inputs(5, strong).items() if n not in ("h0", "u")}
    p["u"] = normal(rng, H, K)
    N = len(CU) - 1
    h0 = normal(rng, N, H, K, V)
    args = [jnp.asarray(p[n], jnp.float32) for n in ("q", "k", "v")]
    extra = {
        "gla": [p["g"]],
        "simple_gla": [p["g"][..., 0]],
        "retention": [],
        "linear_attn": [],
        "rwkv6": [p["g"], p["u"]],
    }[name]
    o, ht = getattr(ops, name)(
        *args,
        *(jnp.asarray(x, jnp.float32) for x in extra),
        initial_state=jnp.asarray(h0, jnp.float32),
        output_final_state=True,
        cu_seqlens=jnp.asarray(CU),
        **backend_kwargs(backend),
    )
    assert ht.shape == (N, H, K, V)
    for n in range(N):
        o_ref, ht_ref = _packed_reference(name, p, CU[n], CU[n + 1], h0[n : n + 1])
        assert_close(o[:, CU[n] : CU[n + 1]], o_ref, f"{name} sequence {n} output")
        assert_close(ht[n : n + 1], ht_ref, f"{name} sequence {n} final state")


def test_cu_seqlens_gradients_reach_every_input():
    rng = np.random.default_rng(6)
    p = {n: x[:1] for n, x in _inputs(7).items() if n in ("q", "k", "v", "g")}
    p["h0"] = normal(rng, len(CU) - 1, H, K, V)
    weights = [normal(rng, 1, T, H, V), normal(rng, len(CU) - 1, H, K, V)]

    def ours(q, k, v, g, h0):
        return ops.gla(q, k, v, g, initial_state=h0, output_final_state=True, cu_seqlens=CU)

    def ref(q, k, v, g, h0):
        outs, finals = zip(
            *(
                oracle.gla(jnp, q[:, a:b], k[:, a:b], v[:, a:b], g[:, a:b], SCALE, h0[n : n + 1])
                for n, (a, b) in enumerate(zip(CU, CU[1:], strict=False))
            ),
            strict=True,
        )
        return jnp.concatenate(outs, axis=1), jnp.concatenate(finals, axis=0)

    assert_grads_close(ours, ref, p, weights, "gla cu_seqlens")


def test_linear_attn_normalize_divides_by_the_key_sum():
    p = _inputs(8)
    q, k = np.abs(p["q"]) + 0.1, np.abs(p["k"]) + 0.1  # a positive feature map
    o, _ = ops.linear_attn(*(jnp.asarray(x, jnp.float32) for x in (q, k, p["v"])), normalize=True)
    o_ref, _ = oracle.gla(np, q, k, p["v"], None, SCALE)
    z = np.sum(SCALE * q * np.cumsum(k, axis=1), axis=-1, keepdims=True)
    assert_close(o, o_ref / (z + 1e-10), "normalised linear attention")


@pytest.mark.parametrize("backend", BACKENDS)
def test_hgrn(backend):
    rng = np.random.default_rng(9)
    x, g, h0 = normal(rng, B, T, 5), log_gates(rng, B, T, 5), normal(rng, B, 5)
    o, ht = ops.hgrn(
        jnp.asarray(x, jnp.float32),
        jnp.asarray(g, jnp.float32),
        initial_state=jnp.asarray(h0, jnp.float32),
        output_final_state=True,
        backend=backend,
    )
    o_ref, ht_ref = oracle.hgrn(np, x, g, h0)
    assert_close(o, o_ref, "hgrn output")
    assert_close(ht, ht_ref, "hgrn final state")
    weights = [normal(rng, B, T, 5), normal(rng, B, 5)]
    assert_grads_close(
        lambda x, g, h0: ops.hgrn(x, g, h0, True, backend=backend),
        lambda x, g, h0: oracle.hgrn(jnp, x, g, h0),
        {"x": x, "g": g, "h0": h0},
        weights,
        "hgrn",
    )


def test_bf16_inputs_keep_the_dtype_and_a_float32_state():
    p = {n: jnp.asarray(x, jnp.bfloat16) for n, x in _inputs(10).items()}
    o, ht = ops.gla(p["q"], p["k"], p["v"], p["g"], output_final_state=True)
    assert o.dtype == jnp.bfloat16 and ht.dtype == jnp.float32
    o_ref, _ = oracle.gla(np, *(np.asarray(p[n], np.float64) for n in "qkvg"), SCALE)
    assert_close(o, o_ref, "bf16 gla", rtol=2e-2)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda z: ops.gla(z(B, T, H, K), z(B, T, H, K), z(B, T, H, V), z(B, T, H)), "gla: g"),
        (lambda z: ops.gla(z(B, T, H), z(B, T, H), z(B, T, H), z(B, T, H)), "gla: q must be"),
        (lambda z: ops.gla(z(B, T, H, K), z(B, T, H, 2), z(B, T, H, V), z(B, T, H, K)), "gla: k"),
        (lambda z: ops.simple_gla(z(B, T, H, K), z(B, T, H, K), z(B, T, H, V), z(B, T)), "g must"),
        (
            lambda z: ops.gla(
                z(B, T, H, K), z(B, T, H, K), z(B, T, H, V), z(B, T, H, K), cu_seqlens=(0, T)
            ),
            "batch must be 1",
        ),
        (
            lambda z: ops.gla(
                z(1, T, H, K), z(1, T, H, K), z(1, T, H, V), z(1, T, H, K), cu_seqlens=(0, 5, 4)
            ),
            "cu_seqlens must rise",
        ),
        (
            lambda z: ops.retention(
                z(1, T, H, K),
                z(1, T, H, K),
                z(1, T, H, V),
                initial_state=z(1, H, K, V),
                cu_seqlens=(0, 5, T),
            ),  # fmt: skip
            r"initial_state must have shape \[N,H,K,V\]",
        ),
        (lambda z: ops.rwkv6(*(z(B, T, H, K),) * 4, z(H, V)), "rwkv6: u"),
        (lambda z: ops.hgrn(z(B, T, 3), z(B, T, 4)), "hgrn: g"),
        (lambda z: ops.gla(*(z(B, T, H, K),) * 4, backend="nope"), "unknown backend"),
    ],
)
def test_bad_arguments_name_the_problem(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(lambda *shape: jnp.zeros(shape))
