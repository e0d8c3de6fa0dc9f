"""eos_step: one step of the recurrence, chained over t, reproduces eos_scan."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import eos
from lcsm_jax.eos import associative, chunked, reference

from .cases import (
    STRUCTURES,
    C,
    Case,
    assert_close,
    case_args,
    chunked_supports,
    make_case,
    run_case,
    scan_fn,
)

RTOL = 2e-5


def _at(x, t: int):
    """Time slice t of a [B,T,...] input; a size-1 time axis (data-independent) is shared."""
    if x is None or isinstance(x, int):
        return x
    if isinstance(x, eos.Decay):
        return eos.Decay(k=_at(x.k, t), d=_at(x.d, t))
    if isinstance(x, eos.ProductDecay):  # p is a parameter [H, K, D]: no time axis
        return eos.ProductDecay(k=_at(x.k, t), d=_at(x.d, t), p=x.p, fn=x.fn, scale=x.scale)
    x = np.asarray(x)
    return x[:, 0] if x.shape[1] == 1 else x[:, t]


def _zero_state(case: Case):
    b, _, h, k, d = case.shape
    return np.zeros((b, h, k, d), np.complex64 if np.iscomplexobj(case.e) else np.float32)


def _step_args(case: Case, t: int):
    return _at(case.e, t), _at(case.i, t), _at(case.log_o, t), _at(case.s, t)


@pytest.mark.parametrize("elementwise", (False, True))
@pytest.mark.parametrize("structure", STRUCTURES)
def test_chained_steps_match_scan(structure, elementwise):
    case = make_case(structure, 6, init=True, elementwise=elementwise, seed=7)
    b, T, h, k, d = case.shape
    state = case.initial_state
    ys = []
    for t in range(T):
        y_t, state = eos.eos_step(*_step_args(case, t), state)
        chex.assert_shape(y_t, (b, h, d))
        chex.assert_shape(state, (b, h, k, d))
        chex.assert_type(y_t, case.i.dtype)
        chex.assert_type(state, _zero_state(case).dtype)
        ys.append(y_t)
    y = jnp.stack(ys, axis=1)
    y_scan, final_scan = run_case(case, "reference")
    chex.assert_trees_all_close((y, state), (y_scan, final_scan), rtol=1e-5, atol=1e-6)
    y_ref, m_ref = case.oracle()
    assert_close(y, y_ref, rtol=RTOL, what="y")
    assert_close(state, m_ref, rtol=RTOL, what="state")


@pytest.mark.parametrize("structure", ("none", "scalar_di", "separable", "full", "complex"))
def test_steps_under_lax_scan_match_scan(structure):
    """eos_step as the body of a jitted lax.scan, starting from zeros."""
    case = make_case(structure, 7, elementwise=structure == "full", seed=8)
    log_o = case.log_o

    def at(x, t):
        if isinstance(x, int):
            return x
        return jax.tree.map(lambda a: jnp.take(a, t if a.shape[1] > 1 else 0, axis=1), x)

    def body(state, t):
        args = (at(x, t) for x in (case.e, case.i, log_o, case.s))
        y_t, state = eos.eos_step(*args, state)
        return state, y_t

    T = case.e.shape[1]
    final, y_TxBxHxD = jax.jit(lambda m: jax.lax.scan(body, m, jnp.arange(T)))(_zero_state(case))
    y_ref, m_ref = case.oracle()
    assert_close(jnp.moveaxis(y_TxBxHxD, 0, 1), y_ref, rtol=RTOL, what="y")
    assert_close(final, m_ref, rtol=RTOL, what="state")


@pytest.mark.parametrize("elementwise", (False, True))
@pytest.mark.parametrize("structure", STRUCTURES)
def test_scan_of_length_one_is_one_step(structure, elementwise):
    case = make_case(structure, 1, init=True, elementwise=elementwise, seed=9)
    y_t, state = eos.eos_step(*_step_args(case, 0), case.initial_state)
    for backend in ("reference", "auto"):
        y, final = run_case(case, backend)
        chex.assert_trees_all_close((y[:, 0], final), (y_t, state), rtol=1e-6, atol=1e-6)


def test_step_bfloat16():
    """bf16 e_t, i_t, s_t: y_t in bf16, state in f32."""
    case = make_case("kwise", 1, init=True, seed=10)
    bf = lambda x: jnp.asarray(x, jnp.bfloat16)  # noqa: E731
    e_t, i_t, lo_t, s_t = _step_args(case, 0)
    y_t, state = eos.eos_step(bf(e_t), bf(i_t), lo_t, bf(s_t), case.initial_state)
    chex.assert_type(y_t, jnp.bfloat16)
    chex.assert_type(state, jnp.float32)
    y_ref, m_ref = Case(
        *(np.asarray(bf(x), np.float32) for x in (case.e, case.i)),
        case.log_o,
        np.asarray(bf(case.s), np.float32),
        case.initial_state,
        None,
        case.log_o_dense,
    ).oracle()
    assert_close(y_t, y_ref[:, 0], rtol=8e-3, what="y_t")
    assert_close(state, m_ref, rtol=1e-5, what="state")


@pytest.mark.parametrize("backend", ("associative", "chunked", "pallas"))
def test_one_token_runs_one_step_for_every_backend(backend):
    """On T = 1 eos_scan takes one reference step, with no loop, whichever backend is named."""
    case = make_case("separable", 1, init=True, seed=11)
    y_t, state = eos.eos_step(*_step_args(case, 0), case.initial_state)
    y, final = run_case(case, backend)
    chex.assert_trees_all_close((y[:, 0], final), (y_t, state), rtol=1e-6, atol=1e-6)
    jaxpr = str(jax.make_jaxpr(scan_fn(case.log_o, backend=backend))(*case_args(case)))
    assert "scan[" not in jaxpr and "while[" not in jaxpr and "pallas_call" not in jaxpr
    longer = make_case("separable", 2, init=True, seed=11)
    assert "scan[" in str(jax.make_jaxpr(scan_fn(longer.log_o))(*case_args(longer)))


@pytest.mark.parametrize("elementwise", (False, True))
@pytest.mark.parametrize("structure", STRUCTURES)
def test_backends_take_one_token_directly(structure, elementwise):
    """Each backend's own scan on T = 1 (the dispatcher no longer sends it one token)."""
    case = make_case(structure, 1, init=True, seg=True, elementwise=elementwise, seed=12)
    p = eos.problem(*case_args(case))
    fns = {"associative": associative.scan, "reference": reference.scan}
    if chunked_supports(structure, elementwise):
        fns["chunked"] = chunked.scan
    y_ref, m_ref = case.oracle()
    for name, fn in fns.items():
        y, final = jax.jit(fn, static_argnums=1)(p, C)
        assert_close(y, y_ref, rtol=RTOL, what=f"{name} y")
        assert_close(final, m_ref, rtol=RTOL, what=f"{name} state")
