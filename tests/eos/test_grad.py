"""Gradients: every backend against the reference, and the reference against SPEC §1 backward."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import eos
from lcsm_jax.eos import chunked

from . import oracle
from .cases import (
    BACKENDS,
    STRUCTURES,
    C,
    Case,
    assert_close,
    assert_trees_close,
    chunked_supports,
    make_case,
    segment_ids,
)

GRAD_TS = (C + 1, 3 * C + 5)
GRAD_RTOL = 1e-4


def _weights(case: Case, seed: int = 1):
    rng = np.random.default_rng(seed)
    b, t, h, k, d = case.shape
    cplx = np.iscomplexobj(case.e)
    draw = lambda shape: (  # noqa: E731
        rng.normal(size=shape) + (1j * rng.normal(size=shape) if cplx else 0)
    ).astype(case.e.dtype)
    return draw((b, t, h, d)), draw((b, h, k, d))


def _params(case: Case) -> dict:
    """The differentiable inputs of `case` (log_o only when it is not Python 0)."""
    params = {"e": case.e, "i": case.i, "s": case.s}
    if not isinstance(case.log_o, int):
        params["log_o"] = case.log_o
    if case.initial_state is not None:
        params["initial_state"] = case.initial_state
    return jax.tree.map(jnp.asarray, params)


def _loss_fn(case: Case, backend: str):
    """params -> sum(y w1) + sum(final w2) (its real part for complex inputs)."""
    w1, w2 = _weights(case)

    def loss(params):
        y, final = eos.eos_scan(
            params["e"],
            params["i"],
            params.get("log_o", 0),
            params["s"],
            initial_state=params.get("initial_state"),
            segment_ids=case.segment_ids,
            backend=backend,
            chunk_size=C,
        )
        return jnp.real(jnp.sum(y * w1) + jnp.sum(final * w2))

    return loss


def losses_and_grads(cases, backend: str):
    """[(loss, grads)] for every case, under one jit (one compilation)."""
    fns = [jax.value_and_grad(_loss_fn(c, backend)) for c in cases]
    run_all = lambda ps: [f(p) for f, p in zip(fns, ps, strict=True)]  # noqa: E731
    return jax.jit(run_all)([_params(c) for c in cases])


GRAD_OPTIONS = list(itertools.product(GRAD_TS, (False, True), (False, True), (False, True)))
# The default run covers each length, both reads and both option settings once; gradient
# programs compile slowly (~1 s per case for the parallel forms), so the full product of
# options is in the slow run.
FAST_OPTIONS = [(C + 1, True, True, False), (3 * C + 5, False, False, False)]
FAST_OPTIONS += [(3 * C + 5, True, True, True)]
FAST_AUTO_OPTIONS = [(3 * C + 5, True, True, False)]
# The recurrent backend's distinct paths: constants (a fixed decay, a product's parameter),
# full and complex decays.
RECURRENT_FAST = ("scalar_di", "product", "full", "complex")


def _check_gradients(structure: str, options: dict) -> None:
    """`options` maps a backend to its (T, init, segments, elementwise) tuples."""
    union = sorted({o for opts in options.values() for o in opts})
    cases = {
        o: make_case(structure, o[0], init=o[1], seg=o[2], elementwise=o[3], seed=2) for o in union
    }
    want = dict(zip(union, losses_and_grads([cases[o] for o in union], "reference"), strict=True))
    failures = []
    for backend, opts in options.items():
        # The chunked backend's ValueError on the rest is checked in test_scan.
        if backend == "chunked":
            opts = [o for o in opts if chunked_supports(structure, o[3])]
        if not opts:
            continue
        got = losses_and_grads([cases[o] for o in opts], backend)
        for o, (got_loss, got_grads) in zip(opts, got, strict=True):
            label = f"{backend} T={o[0]} init={o[1]} segments={o[2]} elementwise={o[3]}"
            try:
                assert_close(got_loss, want[o][0], rtol=GRAD_RTOL, what="loss")
                assert_trees_close(got_grads, want[o][1], rtol=GRAD_RTOL, what="grad")
            except AssertionError as err:
                failures.append(f"{label}: {err}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_backend_gradients_match_reference(structure):
    """Gradients w.r.t. e, i, log_o (or Decay k, d), s and initial_state, every backend."""
    options = {"associative": FAST_OPTIONS, "chunked": FAST_OPTIONS, "auto": FAST_AUTO_OPTIONS}
    if structure in RECURRENT_FAST:  # the rest with -m slow (and SPEC §1's backward below)
        options["recurrent"] = FAST_OPTIONS
    _check_gradients(structure, options)


@pytest.mark.slow
@pytest.mark.parametrize("structure", STRUCTURES)
def test_backend_gradients_match_reference_all_options(structure):
    """As above over T × initial state × segments × read, every combination."""
    _check_gradients(structure, dict.fromkeys((*BACKENDS[1:], "recurrent"), GRAD_OPTIONS))


def _oracle_grads(case: Case) -> dict:
    """SPEC §1's backward in float64, reduced to the shapes of `_params(case)`."""
    w1, w2 = _weights(case)
    g = oracle.eos_vjp(
        case.e, case.i, case.log_o_dense, case.s, case.initial_state, case.segment_ids, w1, w2
    )
    out = {"e": g["de"], "i": g["di"], "s": oracle.unbroadcast(g["ds"], case.s.shape)}
    if isinstance(case.log_o, eos.Decay):
        k, d = case.log_o.k, case.log_o.d
        out["log_o"] = eos.Decay(
            k=None if k is None else oracle.unbroadcast(g["dlog_o"].sum(-1), np.shape(k)),
            d=None if d is None else oracle.unbroadcast(g["dlog_o"].sum(-2), np.shape(d)),
        )
    elif isinstance(case.log_o, eos.ProductDecay):
        lp = case.log_o
        z = oracle.product_argument(lp.k, lp.d, lp.p)
        # d/dz of scale · log σ(z) is scale · σ(-z) = scale · exp(log σ(-z)).
        dz = g["dlog_o"] * lp.scale * np.exp(oracle.log_sigmoid(-z))
        out["log_o"] = eos.ProductDecay(
            k=np.sum(dz * lp.d[..., None, :] * lp.p, axis=-1),
            d=np.sum(dz * lp.k[..., :, None] * lp.p, axis=-2),
            p=np.sum(dz * lp.k[..., :, None] * lp.d[..., None, :], axis=(0, 1)),
            fn=lp.fn,
            scale=lp.scale,
        )
    elif not isinstance(case.log_o, int):
        out["log_o"] = oracle.unbroadcast(g["dlog_o"], np.shape(case.log_o))
    if case.initial_state is not None:
        out["initial_state"] = g["dm0"]
    return out


@pytest.mark.parametrize("elementwise", (False, True))
@pytest.mark.parametrize(
    "structure", ("none", "scalar_di", "kwise", "separable", "product", "full")
)
@pytest.mark.parametrize("backend", ("reference", "recurrent"))
def test_sequential_gradients_match_spec_backward(backend, structure, elementwise):
    """The sequential backends (autodiff of the reference; the recurrent backend's checkpointed
    reverse scan, blocks of C with a tail) against SPEC §1's float64 backward."""
    case = make_case(structure, 9, init=True, seg=True, elementwise=elementwise, seed=4)
    [(_, got)] = losses_and_grads([case], backend)
    assert_trees_close(got, _oracle_grads(case), rtol=GRAD_RTOL, what="grad")


@pytest.mark.parametrize("elementwise", (False, True))
def test_spec_backward_matches_finite_differences(elementwise):
    """The float64 oracle backward itself, checked by central differences of the oracle."""
    case = make_case("full", 6, init=True, seg=True, elementwise=elementwise, seed=6)
    w1, w2 = _weights(case)
    g = oracle.eos_vjp(
        case.e, case.i, case.log_o, case.s, case.initial_state, case.segment_ids, w1, w2
    )
    x0 = {
        "e": case.e,
        "i": case.i,
        "log_o": case.log_o,
        "s": case.s,
        "initial_state": case.initial_state,
    }
    grads = {
        "e": g["de"],
        "i": g["di"],
        "log_o": g["dlog_o"],
        "s": g["ds"],
        "initial_state": g["dm0"],
    }

    def loss(x):
        y, final = oracle.eos(
            x["e"], x["i"], x["log_o"], x["s"], x["initial_state"], case.segment_ids
        )
        return np.sum(y * w1) + np.sum(final * w2)

    rng = np.random.default_rng(0)
    h = 1e-6
    for name, grad in grads.items():
        for _ in range(3):
            v = rng.normal(size=np.shape(x0[name]))
            plus = dict(x0, **{name: x0[name] + h * v})
            minus = dict(x0, **{name: x0[name] - h * v})
            fd = (loss(plus) - loss(minus)) / (2 * h)
            np.testing.assert_allclose(np.sum(grad * v), fd, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize(("backend", "width"), [("associative", 4), ("chunked", 4), ("chunked", 1)])
def test_long_sequence_gradients_are_stable(backend, width):
    """T = 16384, K-wise (width 4) or scalar (width 1) log decays uniform in [-20, 0]: finite
    gradients equal to the reference."""
    T = 16384
    rng = np.random.default_rng(13)
    log_o = rng.uniform(-20.0, 0.0, (1, T, 1, width, 1)).astype(np.float32)
    e, s = (rng.normal(size=(1, T, 1, 4)).astype(np.float32) for _ in range(2))
    i = rng.normal(size=(1, T, 1, 3)).astype(np.float32)
    m0 = rng.normal(size=(1, 1, 4, 3)).astype(np.float32)
    case = Case(e, i, log_o, s, m0, segment_ids(rng, 1, T), log_o)
    [(want_loss, want)] = losses_and_grads([case], "reference")
    [(got_loss, got)] = losses_and_grads([case], backend)
    assert_close(got_loss, want_loss, rtol=1e-4, what="loss")
    assert_trees_close(got, want, rtol=1e-4, what="grad")


def test_chunked_gradients_under_vmap_mixing_safe_and_strong_decays():
    """vmap over a problem with weak decays (factored path) and one with log o in [-20, 0] (exact
    path): under vmap the path choice is per problem, and gradients equal the reference's."""
    T = 3 * C + 5
    rng = np.random.default_rng(21)
    weak = rng.uniform(-0.5, 0.0, (1, T, 1, 4, 1))
    strong = rng.uniform(-20.0, 0.0, (1, T, 1, 4, 1))
    log_o = np.stack([weak, strong]).astype(np.float32)
    e, s = (rng.normal(size=(2, 1, T, 1, 4)).astype(np.float32) for _ in range(2))
    i = rng.normal(size=(2, 1, T, 1, 3)).astype(np.float32)

    def loss(backend):
        def f(e, i, log_o, s):
            y, final = eos.eos_scan(e, i, log_o, s, backend=backend, chunk_size=C)
            return jnp.sum(y * jnp.cos(y)) + jnp.sum(final)

        return jax.jit(jax.vmap(jax.value_and_grad(f, argnums=(0, 1, 2, 3))))

    got_loss, got = loss("chunked")(e, i, log_o, s)
    want_loss, want = loss("reference")(e, i, log_o, s)
    assert np.all(np.isfinite(np.asarray(got_loss)))
    assert_close(got_loss, want_loss, rtol=1e-5, what="loss")
    assert_trees_close(got, want, rtol=GRAD_RTOL, what="grad")


@pytest.mark.parametrize("backend", ("reference", "associative"))
def test_forward_mode_agrees_with_chunked_reverse_mode(backend):
    """<ct, jvp(tangent)> by forward mode (reference/associative) equals <vjp(ct), tangent> from
    the chunked backend's custom VJP (which has no forward mode)."""
    case = make_case("kwise", 3 * C + 5, init=True, seg=True, seed=3)
    rng = np.random.default_rng(4)
    primals = tuple(jnp.asarray(a) for a in (case.e, case.i, case.log_o, case.s))
    tangents = tuple(jnp.asarray(rng.normal(size=np.shape(a)), jnp.float32) for a in primals)

    def fn(name):
        def f(e, i, log_o, s):
            return eos.eos_scan(
                e,
                i,
                log_o,
                s,
                initial_state=case.initial_state,
                segment_ids=case.segment_ids,
                backend=name,
                chunk_size=C,
            )

        return f

    _, (dy, dm) = jax.jvp(fn(backend), primals, tangents)
    ct = (
        jnp.asarray(rng.normal(size=dy.shape), jnp.float32),
        jnp.asarray(rng.normal(size=dm.shape), jnp.float32),
    )
    _, vjp = jax.vjp(fn("chunked"), *primals)
    forward = jnp.sum(ct[0] * dy) + jnp.sum(ct[1] * dm)
    reverse = sum(jnp.sum(g * t) for g, t in zip(vjp(ct), tangents, strict=True))
    np.testing.assert_allclose(float(forward), float(reverse), rtol=1e-4)


@pytest.mark.parametrize(
    ("low", "high", "path"),
    [(-0.05, 0.0, "midpoint"), (-1.5, -1.3, "halves"), (-20.0, 0.0, "exact")],
)
def test_chunked_paths_by_decay_strength(low, high, path):
    """K-wise decays weak enough for the midpoint factoring over a chunk of 64, strong enough to
    need it over each half, or too strong for either (exact sub-blocks): each is the path taken,
    and outputs and gradients equal the reference's."""
    T, C64 = 256, 64
    rng = np.random.default_rng(22)
    log_o = rng.uniform(low, high, (1, T, 2, 4, 1)).astype(np.float32)
    e, s = (rng.normal(size=(1, T, 2, 4)).astype(np.float32) for _ in range(2))
    i = rng.normal(size=(1, T, 2, 3)).astype(np.float32)
    ids = segment_ids(rng, 1, T)
    xs = chunked.Arrays(e, i, s, log_o[..., 0], None)
    paths = ("midpoint", "halves", "exact")
    assert chunked._paths(eos.problem(e, i, log_o, s), C64) == paths
    assert paths[int(chunked._path_index(xs, C64, paths))] == path

    def loss(backend):
        def f(e, i, log_o, s):
            y, final = eos.eos_scan(
                e, i, log_o, s, segment_ids=ids, backend=backend, chunk_size=C64
            )
            return jnp.sum(y * jnp.cos(y)) + jnp.sum(final)

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)))

    got_loss, got = loss("chunked")(e, i, log_o, s)
    want_loss, want = loss("reference")(e, i, log_o, s)
    assert_close(got_loss, want_loss, rtol=1e-5, what="loss")
    assert_trees_close(got, want, rtol=GRAD_RTOL, what="grad")
