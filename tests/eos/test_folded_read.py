"""`auto` on a fixed elementwise read with a row-independent decay (`eos/folded_read.py`): the
K = 1 folded recurrence and the directly formed final memory against the float64 loop and its
backward (SPEC §1), and the problems it must leave alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import eos
from lcsm_jax.eos import folded_read

from . import oracle
from .cases import assert_close, log_decay, segment_ids

B, H, K, D = 2, 3, 5, 4


def _case(decay: str, s_shape, T: int, init: bool, seg: bool, seed: int = 0):
    """(e, i, log_o, s, m0, ids); log_o as an array broadcastable to [B,T,H,K,D] (or None)."""
    rng = np.random.default_rng([seed, T, len(decay), int(init), int(seg), len(s_shape)])
    n = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    log_o = {
        "none": None,
        "scalar": log_decay(rng, (B, T, H, 1, 1)),
        "scalar_di": log_decay(rng, (1, 1, H, 1, 1)),
        "dwise": log_decay(rng, (B, T, H, 1, D)),
        # strong decays: a step forgets up to e^-20 of the memory
        "strong": -rng.uniform(5, 20, (B, T, H, 1, D)).astype(np.float32),
    }[decay]
    m0 = n(B, H, K, D) if init else None
    ids = segment_ids(rng, B, T) if seg else None
    return n(B, T, H, K), n(B, T, H, D), log_o, n(*s_shape), m0, ids


S_SHAPES = ((1, 1, H, K, D), (B, 1, H, K, D), (1, 1, H, 1, D), (1, 1, H, K, 1))
CONFIGS = (  # (s shape, T, initial state, segments)
    (S_SHAPES[0], 2, True, False),
    (S_SHAPES[0], 37, True, True),
    (S_SHAPES[1], 70, False, True),
    (S_SHAPES[2], 9, True, False),
    (S_SHAPES[3], 33, True, True),
)
# The default run: every decay once and every configuration once; -m slow adds a second pairing.
DECAYS = ("none", "scalar", "scalar_di", "dwise", "strong")
CASES = [(d, *CONFIGS[n % 5]) for n, d in enumerate(DECAYS)]
CASES += [
    pytest.param(d, *CONFIGS[(n + 2) % 5], marks=pytest.mark.slow) for n, d in enumerate(DECAYS)
]


def _ids(value):
    """pytest ids: the S shape as s11354, the rest as given."""
    return "s" + "".join(map(str, value)) if isinstance(value, tuple) else None


def _loss(e, i, log_o, s, m0, ids, w1, w2):
    y, m = eos.eos_scan(
        e, i, 0 if log_o is None else log_o, s, initial_state=m0, segment_ids=ids, backend="auto"
    )
    return jnp.sum(y * w1) + jnp.sum(m * w2), (y, m)


@pytest.mark.parametrize(("decay", "s_shape", "T", "init", "seg"), CASES, ids=_ids)
def test_folded_read_matches_the_float64_loop(decay, s_shape, T, init, seg):
    """Outputs, final state and the gradient of every input against SPEC §1 in float64."""
    e, i, log_o, s, m0, ids = _case(decay, s_shape, T, init, seg)
    assert folded_read.applies(eos.problem(e, i, 0 if log_o is None else log_o, s, m0, ids))
    rng = np.random.default_rng(1)
    w1 = rng.normal(size=(B, e.shape[1], H, D)).astype(np.float32)
    w2 = rng.normal(size=(B, H, K, D)).astype(np.float32)

    argnums = tuple(n for n, x in enumerate((e, i, log_o, s, m0)) if x is not None)
    grad = jax.jit(jax.grad(_loss, argnums=argnums, has_aux=True))
    grads, (y, m) = grad(e, i, log_o, s, m0, ids, w1, w2)

    want_y, want_m = oracle.eos(e, i, log_o, s, m0, ids)
    assert_close(y, want_y, rtol=1e-5, what="y")
    assert_close(m, want_m, rtol=1e-5, what="final state")
    g = oracle.eos_vjp(e, i, log_o, s, m0, ids, w1, w2)
    want = {0: g["de"], 1: g["di"], 3: oracle.unbroadcast(g["ds"], s.shape), 4: g["dm0"]}
    if log_o is not None:
        want[2] = oracle.unbroadcast(g["dlog_o"], log_o.shape)
    for n, got in zip(argnums, grads, strict=True):
        assert_close(got, want[n], rtol=1e-5, what=f"grad of {'e i log_o s m0'.split()[n]}")


def test_auto_agrees_with_the_scan_it_replaces():
    """The folded path and the reference's K×D scan of the same problem give one result."""
    e, i, log_o, s, m0, ids = _case("dwise", S_SHAPES[0], 130, init=True, seg=True, seed=3)
    got = eos.eos_scan(e, i, log_o, s, initial_state=m0, segment_ids=ids)
    want = eos.eos_scan(e, i, log_o, s, initial_state=m0, segment_ids=ids, backend="reference")
    assert_close(got[0], want[0], rtol=1e-5, what="y")
    assert_close(got[1], want[1], rtol=1e-5, what="final state")
    assert "folded" in eos.explain(e, i, log_o, s, initial_state=m0, segment_ids=ids)


def test_problems_that_are_not_folded():
    """A row-dependent or complex decay, a time-varying or vector read with an e that varies,
    and one token keep their scan."""
    rng = np.random.default_rng(0)
    n = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    T = 8
    e, i, S = n(B, T, H, K), n(B, T, H, D), n(1, 1, H, K, D)
    kwise = log_decay(rng, (B, T, H, K, 1))
    assert not folded_read.applies(eos.problem(e, i, kwise, S))
    assert not folded_read.applies(eos.problem(e, i, eos.Decay(k=kwise[..., 0], d=n(1)), S))
    assert not folded_read.applies(eos.problem(e, i, 0, n(B, T, H, K, D)))
    assert not folded_read.applies(eos.problem(e, i, 0, n(B, T, H, K)))
    # An e without a time axis does not fold a row-dependent decay, and one full e never folds.
    e_fixed = n(1, 1, H, K)
    assert not folded_read.applies_fixed_e(eos.problem(e_fixed, i, kwise, n(B, T, H, K)))
    assert not folded_read.applies_fixed_e(eos.problem(e, i, 0, n(B, T, H, K)))
    assert not folded_read.applies(eos.problem(e[:, :1], i[:, :1], 0, S))
    c = lambda x: (x + 1j * x[::-1]).astype(np.complex64)  # noqa: E731
    assert not folded_read.applies(eos.problem(c(e), c(i), 0, c(S)))
    assert "folded" not in eos.explain(e, i, kwise, S)


# e without a time axis ([1|B, 1, H, K]) under none/scalar/D-wise decays, with every read.
FIXED_E = [
    ("dwise", (1, 1, H, K), "vector", 37, True, True),
    ("strong", (B, 1, H, K), "elementwise", 33, True, True),
    ("scalar", (1, 1, 1, K), "elementwise", 9, False, False),
    pytest.param("none", (1, 1, H, K), "vector", 70, True, False, marks=pytest.mark.slow),
    pytest.param("scalar_di", (B, 1, H, K), "vector", 2, True, True, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("decay", "e_shape", "read", "T", "init", "seg"), FIXED_E, ids=_ids)
def test_fixed_e_matches_the_float64_loop(decay, e_shape, read, T, init, seg):
    """An e shared over time: outputs, final state and every gradient (e's summed over the
    steps it is shared by) against SPEC §1 in float64."""
    _, i, log_o, _, m0, ids = _case(decay, S_SHAPES[0], T, init, seg, seed=5)
    rng = np.random.default_rng(6)
    e = rng.normal(size=e_shape).astype(np.float32)
    s_shape = (B, T, H, K) if read == "vector" else (B, T, H, K, D)
    s = rng.normal(size=s_shape).astype(np.float32)
    problem = eos.problem(e, i, 0 if log_o is None else log_o, s, m0, ids)
    assert folded_read.applies_fixed_e(problem) and not folded_read.applies(problem)
    w1 = rng.normal(size=(B, T, H, D)).astype(np.float32)
    w2 = rng.normal(size=(B, H, K, D)).astype(np.float32)

    argnums = tuple(n for n, x in enumerate((e, i, log_o, s, m0)) if x is not None)
    grads, (y, m) = jax.jit(jax.grad(_loss, argnums=argnums, has_aux=True))(
        e, i, log_o, s, m0, ids, w1, w2
    )
    full_e = np.broadcast_to(e, (B, T, H, K))
    want_y, want_m = oracle.eos(full_e, i, log_o, s, m0, ids)
    assert_close(y, want_y, rtol=1e-5, what="y")
    assert_close(m, want_m, rtol=1e-5, what="final state")
    g = oracle.eos_vjp(full_e, i, log_o, s, m0, ids, w1, w2)
    want = {0: oracle.unbroadcast(g["de"], e_shape), 1: g["di"], 3: g["ds"], 4: g["dm0"]}
    if log_o is not None:
        want[2] = oracle.unbroadcast(g["dlog_o"], log_o.shape)
    for n, got in zip(argnums, grads, strict=True):
        assert_close(got, want[n], rtol=1e-5, what=f"grad of {'e i log_o s m0'.split()[n]}")
    assert "e without a time axis" in eos.explain(e, i, log_o, s, initial_state=m0, segment_ids=ids)
