"""eos_scan against the float64 oracle: every backend × structure × length × options."""

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from lcsm_jax import eos

from . import oracle
from .cases import (
    BACKENDS,
    STRUCTURES,
    TS,
    C,
    Case,
    assert_close,
    chunked_supports,
    log_decay,
    make_case,
    run_case,
    run_cases,
    scan_fn,
    segment_ids,
)

RTOL = 2e-5
# `auto` runs one of the other backends (on CPU: chunked, or recurrent for full and product
# decays), each checked on its own: the default run keeps `auto` for the structures that show
# its dispatch works; the slow run (`make test-slow`) checks every structure through it too.
AUTO_FAST = ("none", "scalar", "product")
# The per-form tests below take `auto` in the slow run only, for the same reason.
FAST_BACKENDS = [b if b != "auto" else pytest.param(b, marks=pytest.mark.slow) for b in BACKENDS]
PAIRS = [(b, s) for b in BACKENDS for s in STRUCTURES]
FAST_PAIRS = [(b, s) for b, s in PAIRS if b != "auto" or s in AUTO_FAST]
OPTIONS = list(itertools.product(TS, (False, True), (False, True), (False, True)))
# Eagerly every op runs on its own and every inner scan compiles apart (~0.3 s per case), so
# the un-jitted variant runs one length with everything on; the jitted one every combination.
EAGER_OPTIONS = [o for o in OPTIONS if o[:3] == (C + 1, True, True)]


def _out_dtypes(case: Case):
    return case.i.dtype, (np.complex64 if np.iscomplexobj(case.e) else np.float32)


def _check_outputs(case: Case, y, final, rtol: float = RTOL) -> None:
    b, t, h, _, d = case.shape
    y_dtype, m_dtype = _out_dtypes(case)
    chex.assert_shape(y, (b, t, h, d))
    chex.assert_shape(final, case.shape[:1] + case.shape[2:])
    chex.assert_type(y, y_dtype)
    chex.assert_type(final, m_dtype)
    y_ref, m_ref = case.oracle()
    assert_close(y, y_ref, rtol=rtol, what="y")
    assert_close(final, m_ref, rtol=rtol, what="final_state")


def _check_case(case: Case, backend: str, wrap=jax.jit, rtol: float = RTOL) -> None:
    _check_outputs(case, *run_case(case, backend, wrap=wrap), rtol=rtol)


class _Agreement(chex.TestCase):
    def check(self, backend, structure):
        jitted = self.variant.type == chex.ChexVariantType.WITH_JIT
        supported, labelled = [], []
        for T, init, seg, elementwise in OPTIONS if jitted else EAGER_OPTIONS:
            case = make_case(structure, T, init=init, seg=seg, elementwise=elementwise)
            if backend == "chunked" and not chunked_supports(structure, elementwise):
                with pytest.raises(ValueError):
                    run_case(case, backend, wrap=self.variant)
                continue
            supported.append(case)
            labelled.append(f"T={T} init={init} segments={seg} elementwise={elementwise}")
        if not supported:
            return
        failures = []
        outputs = run_cases(supported, backend, wrap=self.variant)
        for case, label, (y, final) in zip(supported, labelled, outputs, strict=True):
            try:
                _check_outputs(case, y, final)
            except AssertionError as err:
                failures.append(f"{label}: {err}")
        assert not failures, f"{len(failures)}/{len(supported)} failed:\n" + "\n".join(failures)


class OracleAgreementTest(_Agreement):
    """The core agreement test; each parameterisation covers T × init × segments × read."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters((f"{b}_{s}", b, s) for b, s in FAST_PAIRS)
    def test_matches_oracle(self, backend, structure):
        self.check(backend, structure)


@pytest.mark.slow
class AutoOracleAgreementTest(_Agreement):
    """The structures `auto` sends to a backend OracleAgreementTest already checks."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        (f"{b}_{s}", b, s) for b, s in PAIRS if (b, s) not in FAST_PAIRS
    )
    def test_matches_oracle(self, backend, structure):
        self.check(backend, structure)


# Broadcast forms the main matrix does not cover, at T = C+1 with initial state and segments.
def _extra_case(name: str, seed: int = 3) -> Case:
    rng = np.random.default_rng(seed)
    T = C + 1
    base = make_case("complex" if name.startswith("complex") else "none", T, init=True, seg=True)
    b, _, h, k, d = base.shape
    shape5 = (b, T, h, k, d)
    sep = functools.partial(oracle.separable, shape_BxTxHxKxD=shape5)
    s = base.s
    if name == "rank3_scalar":  # [H,1,1], right-aligned
        log_o = dense = log_decay(rng, (h, 1, 1))
    elif name == "rank4_kwise_di_batch":  # [T,H,K,1]: shared over the batch
        log_o = dense = log_decay(rng, (T, h, k, 1))
    elif name == "dwise_di_time":  # [B,1,H,1,D]: constant in time
        log_o = dense = log_decay(rng, (b, 1, h, 1, d))
    elif name == "full_di":  # the SSM's fixed K×D decay
        log_o = dense = log_decay(rng, (1, 1, h, k, d))
    elif name == "decay_scalar_per_head":
        lam = log_decay(rng, (h, 1))
        log_o, dense = eos.Decay(k=lam), sep(lam, None)
    elif name == "decay_k_only_di":
        lk = log_decay(rng, (1, 1, h, k))
        log_o, dense = eos.Decay(k=lk), sep(lk, None)
    elif name == "decay_d_only":
        ld = log_decay(rng, (b, T, h, d))
        log_o, dense = eos.Decay(d=ld), sep(None, ld)
    elif name == "decay_scalar_plus_d":  # a size-1 k beside a full d
        lk, ld = log_decay(rng, (b, T, h, 1)), log_decay(rng, (b, T, h, d))
        log_o, dense = eos.Decay(k=lk, d=ld), sep(lk, ld)
    elif name == "elementwise_s_di":  # a fixed K×D read S
        log_o = dense = log_decay(rng, (b, T, h, k, 1))
        s = rng.normal(size=(1, 1, h, k, d)).astype(np.float32)
    elif name == "complex_real_decay":  # real decay with complex e, i, s
        log_o = dense = log_decay(rng, (b, T, h, k, 1))
    elif name == "complex_full":
        theta = rng.uniform(-np.pi, np.pi, shape5).astype(np.float32)
        log_o = dense = (log_decay(rng, shape5) + 1j * theta).astype(np.complex64)
    elif name == "complex_separable":  # rotation per K row, decay per D column
        theta = rng.uniform(-np.pi, np.pi, (b, T, h, k)).astype(np.float32)
        lk = (log_decay(rng, (b, T, h, k)) + 1j * theta).astype(np.complex64)
        ld = log_decay(rng, (b, T, h, d))
        log_o, dense = eos.Decay(k=lk, d=ld), sep(lk, ld)
    elif name == "complex_no_decay":
        log_o, dense = 0, None
    elif name == "complex_scalar_rotation_di":  # fixed unit-modulus rotation per head
        log_o = dense = (1j * rng.uniform(-np.pi, np.pi, (1, 1, h, 1, 1))).astype(np.complex64)
    else:
        raise KeyError(name)
    return Case(base.e, base.i, log_o, s, base.initial_state, base.segment_ids, dense)


EXTRA = (
    "rank3_scalar",
    "rank4_kwise_di_batch",
    "dwise_di_time",
    "full_di",
    "decay_scalar_per_head",
    "decay_k_only_di",
    "decay_d_only",
    "decay_scalar_plus_d",
    "elementwise_s_di",
    "complex_real_decay",
    "complex_full",
    "complex_separable",
    "complex_no_decay",
    "complex_scalar_rotation_di",
)
EXTRA_CHUNKED_UNSUPPORTED = {"full_di", "elementwise_s_di", "complex_full"}


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("name", EXTRA)
def test_broadcast_forms_match_oracle(backend, name):
    case = _extra_case(name)
    if backend == "chunked" and name in EXTRA_CHUNKED_UNSUPPORTED:
        with pytest.raises(ValueError):
            run_case(case, backend, wrap=jax.jit)
        return
    _check_case(case, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("structure", ("kwise", "separable", "full"))
def test_bfloat16_inputs(backend, structure):
    """bf16 e, i, s and f32 log_o: y in bf16, final state in f32, near the oracle on rounded inputs.

    y is rounded to bf16 (relative 2^-9); the state is accumulated in f32 from exact products.
    """
    case = make_case(structure, 3 * C + 5, init=True, seg=True)
    bf = lambda x: jnp.asarray(x, jnp.bfloat16)  # noqa: E731
    case = Case(
        bf(case.e), bf(case.i), case.log_o, bf(case.s), case.initial_state, case.segment_ids,
        case.log_o_dense,
    )  # fmt: skip
    if backend == "chunked" and structure == "full":
        with pytest.raises(ValueError):
            run_case(case, backend, wrap=jax.jit)
        return
    y, final = run_case(case, backend, wrap=jax.jit)
    chex.assert_type(y, jnp.bfloat16)
    chex.assert_type(final, jnp.float32)
    f64 = lambda x: np.asarray(jnp.asarray(x, jnp.float32), np.float64)  # noqa: E731
    y_ref, m_ref = oracle.eos(
        f64(case.e), f64(case.i), case.log_o_dense, f64(case.s), case.initial_state,
        case.segment_ids,
    )  # fmt: skip
    assert_close(y, y_ref, rtol=8e-3, what="y")
    assert_close(final, m_ref, rtol=1e-4, what="final_state")


@pytest.mark.parametrize("chunk_size", (1, 3, 64, None))
@pytest.mark.parametrize(
    "structure",
    # complex and separable: their default-chunk rows are OracleAgreementTest's matrix again
    (
        "scalar",
        "kwise",
        "dwise",
        *(pytest.param(s, marks=pytest.mark.slow) for s in ("separable", "complex")),
    ),
)
def test_chunked_chunk_sizes(structure, chunk_size):
    """Chunk sizes of 1, not dividing T, beyond T, and the default all agree with the oracle."""
    case = make_case(structure, 3 * C + 5, init=True, seg=True, seed=5)
    y, final = run_case(case, "chunked", chunk_size=chunk_size)
    y_ref, m_ref = case.oracle()
    assert_close(y, y_ref, rtol=RTOL, what="y")
    assert_close(final, m_ref, rtol=RTOL, what="final_state")


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_vmap_over_extra_leading_axis(backend):
    """vmap over a leading axis of 3 problems equals 3 separate calls (and the oracle)."""
    cases = [make_case("kwise", C + 1, init=True, seg=True, seed=s) for s in range(3)]
    stack = lambda name: np.stack([getattr(c, name) for c in cases])  # noqa: E731
    fn = scan_fn(cases[0].log_o, backend=backend, chunk_size=C)
    args = [stack(n) for n in ("e", "i", "log_o", "s", "initial_state", "segment_ids")]
    y, final = jax.jit(jax.vmap(fn))(*args)
    chex.assert_shape(y, (3, *cases[0].i.shape))
    for n, (y_n, final_n) in enumerate(run_cases(cases, backend)):
        chex.assert_trees_all_close((y[n], final[n]), (y_n, final_n), rtol=1e-5, atol=1e-6)
        y_ref, m_ref = cases[n].oracle()
        assert_close(y[n], y_ref, rtol=RTOL, what="y")
        assert_close(final[n], m_ref, rtol=RTOL, what="final_state")


def test_reset_ignores_decay_and_initial_state_applies_at_zero():
    """A restart at t wipes m_{t-1} whatever o_t is; initial_state is used at t=0 regardless."""
    T = 4
    e = np.ones((1, T, 1, 1), np.float32)
    i = np.ones((1, T, 1, 1), np.float32)
    s = np.ones((1, T, 1, 1), np.float32)
    log_o = np.full((1, T, 1, 1, 1), np.log(0.5), np.float32)
    m0 = np.full((1, 1, 1, 1), 10.0, np.float32)
    ids = np.array([[3, 3, 4, 4]], np.int32)
    # m: 0.5*10+1 = 6, 0.5*6+1 = 4, restart -> 1, 0.5*1+1 = 1.5
    want = np.array([6.0, 4.0, 1.0, 1.5], np.float32).reshape(1, T, 1, 1)
    case = Case(e, i, log_o, s, m0, ids, log_o)
    for backend in BACKENDS:
        y, final = run_case(case, backend, chunk_size=2)
        chex.assert_trees_all_close(y, want, rtol=1e-6)
        chex.assert_trees_all_close(final, want[:, -1:, :, :].reshape(1, 1, 1, 1), rtol=1e-6)


@pytest.mark.parametrize(
    ("backend", "structure"),
    [(b, "kwise") for b in BACKENDS if b != "auto"]
    + [pytest.param("auto", "kwise", marks=pytest.mark.slow)]
    + [("reference", "full"), ("associative", "full"), ("chunked", "scalar")],
)
def test_long_sequence_with_strong_decays_is_stable(backend, structure):
    """T = 16384 with log decays uniform in [-20, 0]: finite, and equal to the oracle."""
    T = 16384
    rng = np.random.default_rng(11)
    shape = {"scalar": (1, T, 1, 1, 1), "kwise": (1, T, 1, 4, 1), "full": (1, T, 1, 4, 3)}
    log_o = rng.uniform(-20.0, 0.0, shape[structure]).astype(np.float32)
    e = rng.normal(size=(1, T, 1, 4)).astype(np.float32)
    i = rng.normal(size=(1, T, 1, 3)).astype(np.float32)
    s = rng.normal(size=(1, T, 1, 4)).astype(np.float32)
    ids = segment_ids(rng, 1, T)
    case = Case(e, i, log_o, s, None, ids, log_o)
    chunk = 64 if backend == "chunked" else None
    y, final = run_case(case, backend, wrap=jax.jit, chunk_size=chunk)
    y_ref, m_ref = case.oracle()
    assert_close(y, y_ref, rtol=1e-4, what="y")
    assert_close(final, m_ref, rtol=1e-4, what="final_state")


@pytest.mark.parametrize("backend", ("reference", "associative", "chunked"))
def test_long_sequence_with_weak_decays_is_accurate(backend):
    """T = 16384, log decays in [-1e-3, 0] (memory of ~1000 steps), one decay exactly 0."""
    T = 16384
    rng = np.random.default_rng(12)
    log_o = rng.uniform(-1e-3, 0.0, (1, T, 1, 4, 1)).astype(np.float32)
    log_o[..., 0, :] = 0.0
    e = rng.normal(size=(1, T, 1, 4)).astype(np.float32)
    i = rng.normal(size=(1, T, 1, 3)).astype(np.float32)
    s = rng.normal(size=(1, T, 1, 4)).astype(np.float32)
    case = Case(e, i, log_o, s, None, None, log_o)
    y, final = run_case(case, backend, wrap=jax.jit, chunk_size=64)
    y_ref, m_ref = case.oracle()
    assert_close(y, y_ref, rtol=1e-4, what="y")
    assert_close(final, m_ref, rtol=1e-4, what="final_state")
