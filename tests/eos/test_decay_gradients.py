"""Log-decay gradients against the float64 loop (SPEC §1 backward in `oracle.eos_vjp`): per element
(relative to the largest) and as the bias of their sum over (B, T), which is what a shared decay
parameter (Mamba-2's A, a per-head decay) receives.

Under strong decays autodiff of a chunk's cumulative log-decays cancels pair terms in float32
(issue 14); `eos/intra_vjp.py` and `eos/log_sums.py` are the fix these tests hold.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import eos
from lcsm_jax.eos import chunked

from . import oracle

B, H, K, D = 2, 2, 8, 8
BOUND = 1e-5


def _inputs(rng, T, decay_shape, low, high):
    x = {
        "e": rng.normal(size=(B, T, H, K)),
        "i": rng.normal(size=(B, T, H, D)),
        "s": rng.normal(size=(B, T, H, K)),
        "m0": rng.normal(size=(B, H, K, D)),
        "dy": rng.normal(size=(B, T, H, D)),
        "dm": rng.normal(size=(B, H, K, D)),
    }
    return x, {n: rng.uniform(low, high, (B, T, H, *shape)) for n, shape in decay_shape.items()}


def _dense(decays):
    """The oracle's [B,T,H,K,D] log-decay from per-axis ones ({'k': [..,K|1], 'd': [..,D]})."""
    out = 0.0
    if "k" in decays:
        out = out + decays["k"][..., :, None]
    if "d" in decays:
        out = out + decays["d"][..., None, :]
    return np.broadcast_to(out, (B, decays[next(iter(decays))].shape[1], H, K, D))


def _oracle_decay_grads(x, decays, ids=None):
    g = oracle.eos_vjp(x["e"], x["i"], _dense(decays), x["s"], x["m0"], ids, x["dy"], x["dm"])
    out = {}
    if "k" in decays:
        dk = g["dlog_o"].sum(-1)
        out["k"] = dk.sum(-1, keepdims=True) if decays["k"].shape[-1] == 1 else dk
    if "d" in decays:
        out["d"] = g["dlog_o"].sum(-2)
    return out, g


def _grads(x, decays, backend, ids=None, chunk_size=None):
    f32 = {n: jnp.asarray(a, jnp.float32) for n, a in x.items()}

    def loss(lk, ld, e, i, s, m0):
        log_o = eos.Decay(k=lk, d=ld) if ld is not None else lk[..., None]
        y, m = eos.eos_scan(
            e,
            i,
            log_o,
            s,
            initial_state=m0,
            segment_ids=None if ids is None else jnp.asarray(ids),
            backend=backend,
            chunk_size=chunk_size,
        )
        return jnp.sum(y * f32["dy"]) + jnp.sum(m * f32["dm"])

    lk = None if "k" not in decays else jnp.asarray(decays["k"], jnp.float32)
    ld = None if "d" not in decays else jnp.asarray(decays["d"], jnp.float32)
    if lk is None:  # a D-wise decay alone: k = 0
        lk = jnp.zeros((B, ld.shape[1], H, 1), jnp.float32)
    got = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4, 5)))(
        lk, ld, f32["e"], f32["i"], f32["s"], f32["m0"]
    )
    names = ("k", "d", "e", "i", "s", "m0")
    return {n: np.asarray(g, np.float64) for n, g in zip(names, got, strict=True) if g is not None}


def _check_decay(got, want, what):
    """Per element relative to the largest, and the bias of the (B, T) sum relative to Σ|grad|."""
    element = np.abs(got - want).max() / np.abs(want).max()
    bias = np.abs(got.sum((0, 1)) - want.sum((0, 1))).max() / np.abs(want).sum((0, 1)).max()
    assert element <= BOUND, f"{what}: per-element error {element:.2e} of the largest gradient"
    assert bias <= BOUND, f"{what}: bias of the (B, T) sum {bias:.2e} of Σ|grad|"


def _check_rest(got, g, what):
    for name, key in (("e", "de"), ("i", "di"), ("s", "ds"), ("m0", "dm0")):
        err = np.abs(got[name] - g[key]).max() / np.abs(g[key]).max()
        assert err <= BOUND, f"{what}: d{name} error {err:.2e} of the largest"


BACKENDS = ("reference", "chunked", "recurrent", "auto", "associative", "pallas")


def _backend_param(backend, T):
    # The log-depth and interpreted-kernel backends cost seconds per T: their T = 70 and 256
    # cells run with -m slow.
    slow = backend in ("associative", "pallas") and T != 130
    return pytest.param(backend, T, marks=pytest.mark.slow) if slow else (backend, T)


@pytest.mark.parametrize(
    ("backend", "T"), [_backend_param(b, T) for b in BACKENDS for T in (70, 130, 256)]
)
@pytest.mark.parametrize("width", [1, K], ids=["scalar", "kwise"])
def test_strong_decay_gradients_match_float64_loop(backend, T, width):
    """Log-decays of -12 to -5 per step with an initial state (Mamba-2-like)."""
    x, decays = _inputs(np.random.default_rng(T + width), T, {"k": (width,)}, -12.0, -5.0)
    got = _grads(x, decays, backend)
    want, g = _oracle_decay_grads(x, decays)
    _check_decay(got["k"], want["k"], f"{backend} T={T}")
    _check_rest(got, g, f"{backend} T={T}")


PATH_RANGES = {"midpoint": (-0.05, 0.0), "halves": (-1.5, -1.3), "exact": (-20.0, 0.0)}
AXES = {"kwise": {"k": (K,)}, "dwise": {"d": (D,)}, "separable": {"k": (K,), "d": (D,)}}


# dwise is kwise's code path on the other axis; separable runs both: dwise in the slow run only.
@pytest.mark.parametrize(
    "axes", [a if a != "dwise" else pytest.param(a, marks=pytest.mark.slow) for a in AXES]
)
@pytest.mark.parametrize("path", list(PATH_RANGES))
def test_chunked_decay_gradients_on_every_path(path, axes):
    """Each intra-chunk path of the chunked backend (chunk 64), with segments cutting chunks and
    an initial state: decay gradients within 1e-5 per element and in their sum."""
    T, C = 192, 64  # whole chunks, so that the path check below sees the arrays as the backend
    rng = np.random.default_rng(7)
    low, high = PATH_RANGES[path]
    shapes = AXES[axes]
    if axes == "separable":  # two factors add up: each gets half the range
        low, high = low / 2, high / 2
    x, decays = _inputs(rng, T, shapes, low, high)
    ids = np.repeat(np.array([[0] * 40 + [1] * 100 + [2] * 52]), B, axis=0)
    ids[1] = [0] * 128 + [5] * 64  # a cut on a chunk boundary
    lk = decays.get("k", np.zeros((B, T, H, 1)))
    xs = chunked.Arrays(None, None, None, lk, decays.get("d"))
    paths = tuple(PATH_RANGES)
    assert paths[int(chunked._path_index(xs, C, paths))] == path
    got = _grads(x, decays, "chunked", ids=ids, chunk_size=C)
    want, g = _oracle_decay_grads(x, decays, ids)
    for axis in want:
        _check_decay(got[axis], want[axis], f"{path}/{axes} d{axis}")
    _check_rest(got, g, f"{path}/{axes}")


# The default run keeps the largest phase (the hardest case); the slow run adds the smaller ones.
@pytest.mark.parametrize(
    "theta",
    [pytest.param(t, marks=pytest.mark.slow, id=i) for t, i in ((0.5, "0.5"), (np.pi, "pi"))]
    + [pytest.param(2 * np.pi, id="2pi")],
)
@pytest.mark.parametrize("backend", ["chunked", pytest.param("reference", marks=pytest.mark.slow)])
def test_rotations_with_large_phase_per_step(backend, theta):
    """Complex decays turning by up to 2π per step: the chunked backend's phase sums (fixed point,
    `log_sums.exact_phase`) keep it as accurate as the sequential reference, outputs, state and
    the decay's gradient (against the reference backend's, whose steps share no sums)."""
    T = 256
    rng = np.random.default_rng(11)

    def c(*shape):
        return rng.normal(size=shape) + 1j * rng.normal(size=shape)

    e, i, s, m0 = c(B, T, H, K), c(B, T, H, D), c(B, T, H, K), c(B, H, K, D)
    lo = rng.uniform(-0.1, 0.0, (B, T, H, K, 1)) + 1j * rng.uniform(
        0.9 * theta, theta, (B, T, H, K, 1)
    )
    want_y, want_m = oracle.eos(e, i, lo, s, m0)
    args = [jnp.asarray(a, jnp.complex64) for a in (e, i, lo, s, m0)]

    def run(backend):
        def f(e, i, lo, s, m0):
            return eos.eos_scan(e, i, lo, s, initial_state=m0, backend=backend)

        return f

    y, m = jax.jit(run(backend))(*args)
    for got, want, what in ((y, want_y, "y"), (m, want_m, "final state")):
        err = np.abs(np.asarray(got) - want).max() / np.abs(want).max()
        assert err <= 2e-6, f"{what}: {err:.2e}"

    def loss(backend):
        def f(lo):
            y, m = run(backend)(args[0], args[1], lo, args[3], args[4])
            return jnp.sum(jnp.abs(y) ** 2) + jnp.sum(jnp.real(m))

        return jax.jit(jax.grad(f))

    got, want = np.asarray(loss(backend)(args[2])), np.asarray(loss("reference")(args[2]))
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
