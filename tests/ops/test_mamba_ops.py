"""`selective_scan` and `ssd` against float64 oracles of Mamba's and Mamba-2's equations, in
mamba_ssm's layouts: outputs, final states and gradients of every input, for every backend."""

import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import ops

from . import oracle
from .helpers import BACKENDS, assert_close, assert_grads_close, backend_kwargs, normal

Bsz, Dch, L, N = 2, 3, 19, 4
# Gradients through the sequential reference of these K-wise / per-head SSMs take the longest to
# compile; the default run differentiates the chunked form, `-m slow` every backend.
GRAD_BACKENDS = (
    "chunked",
    *(pytest.param(b, marks=pytest.mark.slow) for b in ("reference", "associative", "auto")),
)


def _selective(seed, strong=False):
    rng = np.random.default_rng(seed)
    # A < 0 as S4D-real; strong: Δ·A down to about -12 per step.
    A = -np.exp(rng.uniform(np.log(0.5), np.log(4.0), size=(Dch, N)))
    return dict(
        u=normal(rng, Bsz, Dch, L),
        delta=rng.uniform(1.0, 3.0, size=(Bsz, Dch, L)) if strong else normal(rng, Bsz, Dch, L),
        A=A,
        B=normal(rng, Bsz, N, L),
        C=normal(rng, Bsz, N, L),
        D=normal(rng, Dch),
        z=normal(rng, Bsz, Dch, L),
        delta_bias=normal(rng, Dch, scale=0.5),
    )


def _sel_op(kw):
    def run(u, delta, A, B, C, D, z, delta_bias):
        out, last = ops.selective_scan(
            u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=True,
            return_last_state=True, **kw,
        )  # fmt: skip
        return out, last

    return run


def _sel_ref(xp):
    def run(u, delta, A, B, C, D, z, delta_bias):
        return oracle.selective_scan(xp, u, delta, A, B, C, D, z, delta_bias, softplus=True)

    return run


@pytest.mark.parametrize("strong", [False, True], ids=["moderate", "strong"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_selective_scan_outputs_and_state(backend, strong):
    p = _selective(0, strong)
    out, last = _sel_op(backend_kwargs(backend))(**{k: jnp.asarray(v) for k, v in p.items()})
    out_ref, last_ref = _sel_ref(np)(**p)
    assert out.shape == (Bsz, Dch, L) and last.shape == (Bsz, Dch, N)
    assert_close(out, out_ref, "selective_scan output")
    assert_close(last, last_ref, "selective_scan last state")


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_selective_scan_gradients(backend):
    p = _selective(1)
    rng = np.random.default_rng(2)
    weights = [normal(rng, Bsz, Dch, L), normal(rng, Bsz, Dch, N)]
    assert_grads_close(
        _sel_op(backend_kwargs(backend)), _sel_ref(jnp), p, weights, f"selective_scan/{backend}"
    )


def test_selective_scan_fixed_and_grouped_b_c():
    p = _selective(3)
    rng = np.random.default_rng(4)
    B_fixed = normal(rng, Dch, N)
    out = ops.selective_scan(*(jnp.asarray(p[n]) for n in ("u", "delta", "A")), B_fixed, p["C"])
    # The oracle takes B [B, N, L]; a fixed [D, N] B differs per channel, so run it per channel.
    for d in range(Dch):
        Bd = np.broadcast_to(B_fixed[d][None, :, None], (Bsz, N, L))
        ref, _ = oracle.selective_scan(np, p["u"][:, d:d + 1], p["delta"][:, d:d + 1],
                                       p["A"][d:d + 1], Bd, p["C"])  # fmt: skip
        assert_close(out[:, d : d + 1], ref, f"fixed B, channel {d}")
    grouped = ops.selective_scan(
        *(jnp.asarray(p[n]) for n in ("u", "delta", "A")), p["B"][:, None], p["C"][:, None]
    )
    ref, _ = oracle.selective_scan(np, p["u"], p["delta"], p["A"], p["B"], p["C"])
    assert_close(grouped, ref, "one group [B, 1, N, L]")


H, P = 4, 3


def _ssd(seed, strong=False):
    rng = np.random.default_rng(seed)
    return dict(
        x=normal(rng, Bsz, L, H, P),
        dt=rng.uniform(2.0, 4.0, size=(Bsz, L, H)) if strong else normal(rng, Bsz, L, H),
        A=-rng.uniform(1.0, 3.0, size=H) if strong else -rng.uniform(0.2, 1.5, size=H),
        B=normal(rng, Bsz, L, 1, N),
        C=normal(rng, Bsz, L, 1, N),
        D=normal(rng, H),
        z=normal(rng, Bsz, L, H, P),
        dt_bias=normal(rng, H, scale=0.5),
        h0=normal(rng, Bsz, H, P, N),
    )


def _ssd_op(kw, seq_idx=None):
    def run(x, dt, A, B, C, D, z, dt_bias, h0):
        return ops.ssd(
            x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, initial_states=h0, seq_idx=seq_idx,
            dt_softplus=True, return_final_states=True, **kw,
        )  # fmt: skip

    return run


def _ssd_ref(xp, seq_idx=None):
    def run(x, dt, A, B, C, D, z, dt_bias, h0):
        return oracle.ssd(xp, x, dt, A, B, C, D, z, dt_bias, True, h0, seq_idx)

    return run


@pytest.mark.parametrize("strong", [False, True], ids=["moderate", "strong"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ssd_outputs_and_state(backend, strong):
    p = _ssd(5, strong)
    seq_idx = np.repeat([[0] * 9 + [1] * 10], Bsz, axis=0)
    kw = {k: v for k, v in backend_kwargs(backend).items() if k == "backend"}
    y, last = _ssd_op({**kw, "chunk_size": 8 if backend == "chunked" else None}, seq_idx)(
        **{k: jnp.asarray(v) for k, v in p.items()}
    )
    y_ref, last_ref = _ssd_ref(np, seq_idx)(**p)
    assert y.shape == (Bsz, L, H, P) and last.shape == (Bsz, H, P, N)
    assert_close(y, y_ref, "ssd output")
    assert_close(last, last_ref, "ssd final state")


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_ssd_gradients(backend):
    p = _ssd(6)
    rng = np.random.default_rng(7)
    weights = [normal(rng, Bsz, L, H, P), normal(rng, Bsz, H, P, N)]
    kw = {"backend": backend, "chunk_size": 8 if backend == "chunked" else None}
    assert_grads_close(_ssd_op(kw), _ssd_ref(jnp), p, weights, f"ssd/{backend}")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda z: ops.selective_scan(z(2, 3, 5), z(2, 3, 4), z(3, 2), z(3, 2), z(3, 2)), "delta"),
        (lambda z: ops.selective_scan(z(2, 3, 5), z(2, 3, 5), z(4, 2), z(3, 2), z(3, 2)), "A must"),
        (
            lambda z: ops.selective_scan(z(2, 3, 5), z(2, 3, 5), z(3, 2), z(2, 2, 2, 5), z(3, 2)),
            "2 groups, which must divide D=3",
        ),
        (
            lambda z: ops.selective_scan(
                z(2, 3, 5), z(2, 3, 5), z(3, 2).astype(jnp.complex64), z(3, 2), z(3, 2)
            ),
            "A must be real",
        ),
        (lambda z: ops.ssd(z(2, 5, 4, 3), z(2, 5, 3), z(4), z(2, 5, 1, 2), z(2, 5, 1, 2)), "dt"),
        (
            lambda z: ops.ssd(z(2, 5, 4, 3), z(2, 5, 4), z(4), z(2, 5, 3, 2), z(2, 5, 3, 2)),
            "3 groups, which must divide the 4 heads",
        ),
        (
            lambda z: ops.ssd(
                z(2, 5, 4, 3), z(2, 5, 4), z(4), z(2, 5, 1, 2), z(2, 5, 1, 2), D=z(3)
            ),
            "D must be",
        ),
    ],
)
def test_bad_arguments_name_the_problem(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(lambda *shape: jnp.zeros(shape))
