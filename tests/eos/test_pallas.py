"""Pallas backend in interpret mode: every kernel against the float64 oracle and the reference.

Kernels under test: "scan" and "chunk" (the GPU/Triton kernels) and "mosaic" (the TPU scan).
Interpret mode compiles each problem into an XLA loop (~1.5 s a case on CPU), so the default run
covers every structure, length, option and read once, spread over cases; the full product is in
the slow run.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import eos
from lcsm_jax.eos import inputs, pallas

from .cases import (
    STRUCTURES,
    TS,
    C,
    Case,
    assert_close,
    assert_trees_close,
    case_args,
    chunked_supports,
    make_case,
    segment_ids,
)
from .test_grad import GRAD_OPTIONS, _params, _weights, losses_and_grads

RTOL = 2e-5
GRAD_RTOL = 1e-4
KERNELS = ("scan", "chunk", "mosaic")
# A product decay reaches the kernels materialised (a full decay): the scan kernel checks that
# path once; the other kernels' runs stay on the structures they read.
BASE = tuple(s for s in STRUCTURES if s != "product")
# The TPU kernel's default run takes every other structure (it shares the step math of "scan").
FAST_STRUCTURES = {"scan": STRUCTURES, "chunk": BASE, "mosaic": BASE[::2]}
REAL = (*(s for s in BASE if s != "complex"), "product")
# (T, initial state, segments, elementwise read): structure n of REAL takes FAST[n], so the
# default run sees every length, both options on and off, and both reads.
FAST = [
    (1, False, False, False),
    (2, True, True, True),
    (C - 1, False, True, False),
    (C, True, False, True),
    (C + 1, True, True, False),
    (3 * C + 5, True, True, True),
    (3 * C + 5, False, True, False),
]
OPTIONS = list(itertools.product(TS, (False, True), (False, True), (False, True)))


def _supported(kernel: str, structure: str, elementwise: bool) -> bool:
    return kernel != "chunk" or chunked_supports(structure, elementwise)


def _pallas_fn(case: Case, kernel: str, **blocks):
    """f(e, i, log_o, s, initial_state, segment_ids) -> (y, final) with the named kernel."""
    zero = isinstance(case.log_o, int)

    def f(e, i, lo, s, m0, ids):
        p = inputs.problem(e, i, 0 if zero else lo, s, m0, ids)
        chosen = (
            {"kernel": "scan", "target": "mosaic"} if kernel == "mosaic" else {"kernel": kernel}
        )
        y, m = pallas.scan_with(p, **chosen, **blocks)
        return y.astype(p.out_dtype), m

    return f


def _run(cases, kernel: str, **blocks):
    fns = [_pallas_fn(c, kernel, **blocks) for c in cases]
    run_all = lambda args: [f(*a) for f, a in zip(fns, args, strict=True)]  # noqa: E731
    return jax.jit(run_all)([case_args(c) for c in cases])


def _check_outputs(cases, outputs, labels, rtol=RTOL):
    failures = []
    for case, label, (y, final) in zip(cases, labels, outputs, strict=True):
        b, t, h, _, d = case.shape
        try:
            chex.assert_shape(y, (b, t, h, d))
            chex.assert_type(y, case.i.dtype)
            chex.assert_type(final, jnp.float32)
            y_ref, m_ref = case.oracle()
            assert_close(y, y_ref, rtol=rtol, what="y")
            assert_close(final, m_ref, rtol=rtol, what="final_state")
        except AssertionError as err:
            failures.append(f"{label}: {err}")
    assert not failures, f"{len(failures)}/{len(cases)} failed:\n" + "\n".join(failures)


def _forward_cases(kernel: str, pairs):
    """[(structure, (T, init, seg, elementwise))] -> (cases, labels) the kernel supports."""
    cases, labels = [], []
    for structure, (T, init, seg, elementwise) in pairs:
        if not _supported(kernel, structure, elementwise):
            continue
        cases.append(make_case(structure, T, init=init, seg=seg, elementwise=elementwise))
        labels.append(f"{kernel} {structure} T={T} init={init} seg={seg} elementwise={elementwise}")
    return cases, labels


@pytest.mark.parametrize("kernel", KERNELS)
def test_forward_matches_oracle(kernel):
    """Every structure, with the lengths and options spread over them (one compilation)."""
    pairs = []
    for n, structure in enumerate(REAL):
        if structure not in FAST_STRUCTURES[kernel]:
            continue
        T, init, seg, elementwise = FAST[n % len(FAST)]
        # The chunk kernel has no elementwise read: give it the vector read of the same case.
        pairs.append((structure, (T, init, seg, elementwise and kernel != "chunk")))
    cases, labels = _forward_cases(kernel, pairs)
    _check_outputs(cases, _run(cases, kernel, block_t=C), labels)


@pytest.mark.slow
@pytest.mark.parametrize("structure", REAL)
@pytest.mark.parametrize("kernel", KERNELS)
def test_forward_matches_oracle_all_options(kernel, structure):
    cases, labels = _forward_cases(kernel, [(structure, o) for o in OPTIONS])
    _check_outputs(cases, _run(cases, kernel, block_t=C), labels)


def _pallas_losses_and_grads(cases, kernel: str, **blocks):
    """[(loss, grads)] as in test_grad, through `pallas.scan_with` with the named kernel."""

    def loss_fn(case):
        w1, w2 = _weights(case)
        f = _pallas_fn(case, kernel, **blocks)

        def loss(params):
            y, final = f(
                params["e"],
                params["i"],
                params.get("log_o"),
                params["s"],
                params.get("initial_state"),
                case.segment_ids,
            )
            return jnp.sum(y * w1) + jnp.sum(final * w2)

        return jax.value_and_grad(loss)

    fns = [loss_fn(c) for c in cases]
    run_all = lambda ps: [f(p) for f, p in zip(fns, ps, strict=True)]  # noqa: E731
    return jax.jit(run_all)([_params(c) for c in cases])


def _check_gradients(kernel: str, pairs, **blocks):
    cases, labels = _forward_cases(kernel, pairs)
    want = losses_and_grads(cases, "reference")
    got = _pallas_losses_and_grads(cases, kernel, block_t=C, **blocks)
    failures = []
    for label, (got_loss, got_grads), (want_loss, want_grads) in zip(
        labels, got, want, strict=True
    ):
        try:
            assert_close(got_loss, want_loss, rtol=GRAD_RTOL, what="loss")
            assert_trees_close(got_grads, want_grads, rtol=GRAD_RTOL, what="grad")
        except AssertionError as err:
            failures.append(f"{label}: {err}")
    assert not failures, "\n".join(failures)


FAST_GRAD = {
    "scan": [
        ("full", (3 * C + 5, True, True, False)),
        ("dwise", (3 * C + 5, True, True, True)),
        ("scalar_di", (C + 1, False, False, True)),
    ],
    "chunk": [
        ("scalar", (C + 1, False, True, False)),
        ("separable", (3 * C + 5, True, True, False)),
    ],
    "mosaic": [
        ("full", (3 * C + 5, True, True, True)),
        ("scalar", (C + 1, True, True, False)),
    ],
}


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradients_match_reference(kernel):
    """Gradients w.r.t. e, i, log_o (or Decay k, d), s and initial_state."""
    _check_gradients(kernel, FAST_GRAD[kernel])


@pytest.mark.slow
@pytest.mark.parametrize("structure", REAL)
@pytest.mark.parametrize("kernel", KERNELS)
def test_gradients_match_reference_all_options(kernel, structure):
    _check_gradients(kernel, [(structure, o) for o in GRAD_OPTIONS])


def test_channel_blocks_and_time_blocks():
    """Several K and D tiles (partial sums, padded D), checkpoints every 3 steps, T = 3C+5."""
    T = 3 * C + 5
    blocks = {"block_k": 2, "block_d": 2, "block_t": 3}
    pairs = [("full", (T, True, True, True)), ("separable", (T, True, True, False))]
    cases, labels = _forward_cases("scan", pairs)
    _check_outputs(cases, _run(cases, "scan", **blocks), labels)
    _check_gradients("scan", pairs[:1], block_k=2, block_d=2)
    cases, labels = _forward_cases("chunk", pairs[1:])
    _check_outputs(cases, _run(cases, "chunk", block_d=2, block_t=3), labels)


def test_time_block_of_one_and_beyond_t():
    """Checkpoints after every step (scan) and a chunk longer than the sequence (chunk)."""
    pairs = [("kwise", (3 * C + 5, True, True, False))]
    for kernel, block_t in (("scan", 1), ("chunk", 64)):
        cases, labels = _forward_cases(kernel, pairs)
        _check_outputs(cases, _run(cases, kernel, block_t=block_t), labels)


def test_dispatch_through_eos_scan():
    """backend='pallas' picks the chunk kernel for separable decays, the scan otherwise."""
    separable, full = make_case("separable", C + 1), make_case("full", C + 1, init=True, seg=True)
    assert pallas.default_kernel(inputs.problem(*case_args(separable))) == "chunk"
    assert pallas.default_kernel(inputs.problem(*case_args(full))) == "scan"
    y, final = jax.jit(
        lambda e, i, lo, s, m0, ids: eos.eos_scan(
            e, i, lo, s, initial_state=m0, segment_ids=ids, backend="pallas", chunk_size=C
        )
    )(*case_args(full))
    _check_outputs([full], [(y, final)], ["eos_scan"])


def test_bfloat16_inputs():
    """bf16 e, i, s: y in bf16, final state in f32 accumulated from the rounded inputs."""
    case = make_case("full", 3 * C + 5, init=True, seg=True)
    bf = lambda x: jnp.asarray(x, jnp.bfloat16)  # noqa: E731
    case = Case(bf(case.e), bf(case.i), case.log_o, bf(case.s), case.initial_state,
                case.segment_ids, case.log_o_dense)  # fmt: skip
    [(y, final)] = _run([case], "scan", block_t=C)
    chex.assert_type(y, jnp.bfloat16)
    chex.assert_type(final, jnp.float32)
    f64 = lambda x: np.asarray(jnp.asarray(x, jnp.float32), np.float64)  # noqa: E731
    rounded = Case(f64(case.e), f64(case.i), case.log_o, f64(case.s), case.initial_state,
                   case.segment_ids, case.log_o_dense)  # fmt: skip
    y_ref, m_ref = rounded.oracle()
    assert_close(y, y_ref, rtol=8e-3, what="y")
    assert_close(final, m_ref, rtol=1e-4, what="final_state")


def test_strong_decays_over_a_long_sequence_are_stable():
    """T = 512, K-wise and full log decays uniform in [-20, 0], restarts: finite and exact."""
    T = 512
    rng = np.random.default_rng(11)
    cases = []
    for shape in ((1, T, 1, 4, 1), (1, T, 1, 4, 3)):
        log_o = rng.uniform(-20.0, 0.0, shape).astype(np.float32)
        e, s = (rng.normal(size=(1, T, 1, 4)).astype(np.float32) for _ in range(2))
        i = rng.normal(size=(1, T, 1, 3)).astype(np.float32)
        cases.append(Case(e, i, log_o, s, None, segment_ids(rng, 1, T), log_o))
    _check_outputs(cases[:1], _run(cases[:1], "chunk"), ["chunk"], rtol=1e-4)
    _check_outputs(cases[1:], _run(cases[1:], "scan"), ["scan"], rtol=1e-4)


def test_rejects_what_it_does_not_support():
    real = make_case("full", C + 1)
    p = inputs.problem(real.e, real.i, real.log_o, real.s)
    with pytest.raises(ValueError, match="'chunk' kernel"):
        pallas.scan_with(p, kernel="chunk")
    with pytest.raises(ValueError, match="unknown Pallas kernel"):
        pallas.scan_with(p, kernel="fused")
    with pytest.raises(ValueError, match="block_k must be a positive int"):
        pallas.scan_with(p, block_k=0)
    cplx = make_case("complex", C + 1)
    with pytest.raises(ValueError, match="backend 'pallas' does not support complex"):
        eos.eos_scan(cplx.e, cplx.i, cplx.log_o, cplx.s, backend="pallas")
    with pytest.raises(ValueError, match="metal platform"):
        eos.resolve_backend("pallas", p, platform="metal")
    assert eos.resolve_backend("pallas", p, platform="tpu") == "pallas"
    with pytest.raises(ValueError, match="no TPU"):
        pallas.scan_with(inputs.problem(*case_args(make_case("kwise", 2))), kernel="chunk",
                         target="mosaic")  # fmt: skip
    with pytest.raises(ValueError, match="unknown Pallas target"):
        pallas.scan_with(p, target="ptx")


def test_auto_never_picks_pallas_on_cpu():
    """On CPU Pallas only runs interpreted, far slower than every XLA backend."""
    for structure in ("kwise", "full"):
        case = make_case(structure, C + 1)
        p = inputs.problem(case.e, case.i, case.log_o, case.s)
        assert eos.resolve_backend("auto", p, platform="cpu") != "pallas"


@pytest.mark.parametrize(
    ("structure", "kernel", "elementwise"),
    [("full", "scan", True), ("separable", "chunk", False), ("scalar", "chunk", False)],
)
def test_kernels_lower_to_triton_without_a_gpu(structure, kernel, elementwise):
    """Forward and backward lower through Pallas' Triton path (lowering only; nothing runs).

    Catches what interpret mode accepts and Triton does not: block sizes that are not powers of
    two, operations without a Triton lowering, matmuls under 16.
    """
    case = make_case(structure, 3 * C + 5, init=True, seg=True, elementwise=elementwise)
    f = _pallas_fn(case, kernel, interpret=False)
    loss = lambda *a: jnp.sum(f(*a, case.segment_ids)[0])  # noqa: E731
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))
    args = case_args(case)[:5]
    text = grad.trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    # One Triton call for the forward kernel, one for the backward.
    assert text.count("custom_call @__gpu$xla.gpu.triton(") == 2


def test_vmap_over_extra_leading_axis():
    """vmap over 2 problems (pallas_call's batching rule, through the custom_vjp) = each alone."""
    cases = [make_case("kwise", C + 1, init=True, seg=True, seed=s) for s in range(2)]
    stack = lambda name: np.stack([getattr(c, name) for c in cases])  # noqa: E731
    fn = _pallas_fn(cases[0], "chunk", block_t=C)
    args = [stack(n) for n in ("e", "i", "log_o", "s", "initial_state", "segment_ids")]
    y, final = jax.jit(jax.vmap(fn))(*args)
    _check_outputs(cases, [(y[n], final[n]) for n in range(2)], ["vmap 0", "vmap 1"])


def test_mosaic_channel_tiles():
    """TPU kernel with 2 K tiles of 8 rows and 2 D tiles of 128 lanes (D = 130 padded to 256)."""
    cases = [
        make_case("full", C + 1, init=True, seg=True, dims=(1, 2, 16, 3)),
        make_case("dwise", C + 1, init=True, seg=True, dims=(1, 1, 4, 130)),
    ]
    labels = ["K tiles", "D tiles"]
    _check_outputs(cases, _run(cases, "mosaic", block_k=8, block_d=128, block_t=2), labels)


@pytest.mark.parametrize(("structure", "elementwise"), [("full", True), ("scalar", False)])
def test_tpu_kernel_lowers_to_mosaic_without_a_tpu(structure, elementwise):
    """Forward and backward lower to Mosaic custom calls (lowering only; nothing runs)."""
    case = make_case(structure, 3 * C + 5, init=True, seg=True, elementwise=elementwise)
    f = _pallas_fn(case, "mosaic", interpret=False)
    loss = lambda *a: jnp.sum(f(*a, case.segment_ids)[0])  # noqa: E731
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))
    text = grad.trace(*case_args(case)[:5]).lower(lowering_platforms=("tpu",)).as_text()
    assert text.count("custom_call @tpu_custom_call(") == 2


def test_chunk_backward_uses_its_own_channel_tiles():
    """The chunk kernel takes all of K; its backward scan runs 4 K tiles of 4 (block_k=4)."""
    case = make_case("separable", 2 * C + 1, init=True, seg=True, dims=(1, 2, 16, 3))
    [(want_loss, want)] = losses_and_grads([case], "reference")
    [(got_loss, got)] = _pallas_losses_and_grads([case], "chunk", block_k=4, block_t=C)
    assert_close(got_loss, want_loss, rtol=GRAD_RTOL, what="loss")
    assert_trees_close(got, want, rtol=GRAD_RTOL, what="grad")
