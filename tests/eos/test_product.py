"""Factored decays (`eos.ProductDecay`): Mamba's Δ ⊗ A and the paper's o_types 6-9 against a
float64 loop, every backend; validation; the recurrent backend's gradient memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import eos

from . import oracle
from .cases import assert_close, assert_trees_close

B, T, H, K, D = 2, 19, 2, 4, 3
BACKENDS = ("reference", "recurrent", "associative", "auto")


def _mamba_inputs(seed=0):
    """e, i, s, m0, segment ids, Δ [B,T,H,D] > 0 and A [H,K,D] < 0 (S4D-real-like)."""
    rng = np.random.default_rng(seed)
    n = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    delta = np.logaddexp(0.0, n(B, T, H, D)).astype(np.float32)
    a = -np.exp(n(H, K, D)).astype(np.float32)
    ids = np.repeat([[0] * 11 + [1] * 8], B, axis=0)
    return n(B, T, H, K), n(B, T, H, D), n(B, T, H, K), n(B, H, K, D), ids, delta, a


@pytest.mark.parametrize("backend", BACKENDS)
def test_mamba_decay_matches_the_float64_loop(backend):
    """log o[r,c] = Δ_t[c] A[r,c]: outputs and final state (block 4: four blocks and a tail)."""
    e, i, s, m0, ids, delta, a = _mamba_inputs()
    log_o = eos.ProductDecay(d=delta, p=a)
    y, m = eos.eos_scan(
        e, i, log_o, s, initial_state=m0, segment_ids=ids, backend=backend, chunk_size=4
    )
    dense = delta.astype(np.float64)[..., None, :] * a.astype(np.float64)
    want_y, want_m = oracle.eos(e, i, dense, s, m0, ids)
    assert_close(y, want_y, rtol=1e-5, what="y")
    assert_close(m, want_m, rtol=1e-5, what="final state")


@pytest.mark.parametrize("backend", ("recurrent", "associative"))
def test_mamba_decay_gradients_match_the_reference(backend):
    """Gradients of every input, Δ and A included, against autodiff of the reference."""
    e, i, s, m0, ids, delta, a = _mamba_inputs(1)
    w = np.random.default_rng(2).normal(size=(B, T, H, D)).astype(np.float32)

    def loss(backend, e, i, s, m0, delta, a):
        y, m = eos.eos_scan(
            e, i, eos.ProductDecay(d=delta, p=a), s, initial_state=m0, segment_ids=ids,
            backend=backend, chunk_size=4,
        )  # fmt: skip
        return jnp.sum(y * w) + jnp.sum(m**2)

    args = tuple(map(jnp.asarray, (e, i, s, m0, delta, a)))
    grad = lambda b: jax.grad(loss, argnums=tuple(range(1, 7)))(b, *args)  # noqa: E731
    assert_trees_close(grad(backend), grad("reference"), rtol=1e-5, what="grad")


def test_a_product_equals_its_materialised_decay():
    """The factored decay and the same decay passed as a [B,T,H,K,D] array give one result."""
    e, i, s, m0, ids, delta, a = _mamba_inputs(3)
    rng = np.random.default_rng(4)
    z, p = rng.normal(size=(B, T, H, K)), rng.normal(size=(H, K, 1))
    factored = eos.ProductDecay(k=z, p=p, fn="log_sigmoid", scale=0.25)
    dense = jax.nn.log_sigmoid(jnp.asarray(z)[..., :, None] * jnp.asarray(p)[None, None]) * 0.25
    dense = jnp.broadcast_to(dense, (B, T, H, K, D))
    for backend in ("reference", "recurrent"):
        got = eos.eos_scan(e, i, factored, s, initial_state=m0, backend=backend)
        want = eos.eos_scan(e, i, dense, s, initial_state=m0, backend=backend)
        assert_trees_close(got, want, rtol=1e-6, what=backend)


def test_structure_of_a_product():
    e, i, s, _, _, delta, a = _mamba_inputs()
    assert eos.problem(e, i, eos.ProductDecay(d=delta, p=a), s).structure == "product"
    # Without a K×D data-dependent result it is an ordinary (here K-wise) decay array.
    k_only = eos.ProductDecay(k=np.ones((B, T, H, K), np.float32), fn="log_sigmoid")
    assert eos.problem(e, i, k_only, s).structure == "k"
    fixed = eos.ProductDecay(p=a)
    assert eos.problem(e, i, fixed, s).structure == "full"


@pytest.mark.parametrize(
    ("decay", "error", "match"),
    [
        (eos.ProductDecay(), ValueError, "without factors"),
        (eos.ProductDecay(d=np.ones((B, T, H, D)), fn="tanh"), ValueError, r"log_o\.fn"),
        (eos.ProductDecay(d=np.ones((B, T, H, 5))), ValueError, r"log_o\.d"),
        (eos.ProductDecay(p=np.ones((H, K + 1, D))), ValueError, r"log_o\.p"),
        (eos.ProductDecay(k=np.ones((B, T, H, K), np.int32)), TypeError, r"log_o\.k"),
        (eos.ProductDecay(d=np.ones((B, T, H, D)), scale="2"), TypeError, "scale"),
    ],
)
def test_bad_products_are_refused(decay, error, match):
    e, i, s, *_ = _mamba_inputs()
    with pytest.raises(error, match=match):
        eos.eos_scan(e, i, decay, s)


def test_complex_factors_need_the_identity():
    rng = np.random.default_rng(0)
    c = lambda *shape: (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)  # noqa: E731
    e, i, s = c(B, T, H, K), c(B, T, H, D), c(B, T, H, K)
    with pytest.raises(TypeError, match="identity"):
        eos.eos_scan(e, i, eos.ProductDecay(d=c(B, T, H, D), fn="log_sigmoid"), s)
    d, p = c(B, T, H, D), -np.abs(c(H, K, D)).astype(np.complex64)
    y, _ = eos.eos_scan(e, i, eos.ProductDecay(d=d * 0.1, p=p), s, backend="recurrent")
    dense = (d * 0.1).astype(np.complex128)[..., None, :] * p.astype(np.complex128)
    assert_close(y, oracle.eos(e, i, dense, s)[0], rtol=1e-5, what="complex y")


def _grad_temp_mib(backend: str, T: int) -> float:
    """XLA's temporary memory for fwd+bwd of a Mamba-like product decay at length T."""
    Bq, Hq, Kq, Dq = 1, 1, 64, 64
    shapes = [(Bq, T, Hq, Kq), (Bq, T, Hq, Dq), (Bq, T, Hq, Kq), (Bq, T, Hq, Dq), (Hq, Kq, Dq)]

    def loss(e, i, s, delta, a):
        y, m = eos.eos_scan(e, i, eos.ProductDecay(d=delta, p=a), s, backend=backend)
        return jnp.sum(y) + jnp.sum(m)

    specs = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes]
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4))).lower(*specs).compile()
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


def test_recurrent_gradient_does_not_keep_every_memory():
    """The reference's autodiff keeps T memories (T·K·D); the recurrent backend keeps T/C
    checkpoints, one block and O(T·(K+D)) inputs: at T = 4096 a small fraction."""
    memory = 4096 * 64 * 64 * 4 / 2**20  # T memories, 64 MiB
    assert _grad_temp_mib("reference", 4096) > memory
    assert _grad_temp_mib("recurrent", 4096) < memory / 8
