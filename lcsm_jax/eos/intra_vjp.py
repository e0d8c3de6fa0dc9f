"""The gradient of a chunk's intra-chunk term, with its log-decay part taken by the pair identity.

Every intra path (`chunk_math`, `intra_exact`) computes y_t = Σ_{j≤t} P(t, j), a sum of pair
terms whose decay is exp(G_t - G_j) with G the chunk's cumulative log-decay: the pair (t, j)
depends on the per-step log-decay l_u exactly for j < u ≤ t. So

    ∂L/∂l_u = Σ_{t≥u} Σ_{j<u} P̄(t, j) = Σ_{v≥u} (Q_v - K_v),

with P̄ the pair's share of the loss, K_v = Σ_{t>v} P̄(t, v) its key side and Q_v =
Σ_{j<v} P̄(v, j) its query side. For the K axis K = e ⊙ ∂e and Q = s ⊙ ∂s of the term restricted
to pairs j < t; for the D axis K = i ⊙ ∂i and Q = ∂y ⊙ y of the same. Autodiff of the chunk
instead sends a pair's share to G_t with a plus and to G_j with a minus and sums them back by a
reverse cumulative sum: the diagonal pairs (t, t), the largest under strong decays, cancel there
in exact arithmetic only and leave a float32 residue of the size of the whole term, a one-signed
bias of the decay gradient. Here the diagonal never enters the decay gradient, and the gradients
of s, e and i add it back in closed form. The sum runs from the chunk's end down to u, so a pair
(t, j) enters no l_u with u > t even by rounding: the gradient stays exactly causal.

The paths take the per-step log-decays and form every exponent they need as a sum over the steps
it spans (never as a difference of two cumulative sums, which under strong decays loses
|G|·2⁻²⁴ of it); their own dependence on the decays is not differentiated: the identity
replaces it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lcsm_jax.eos import log_sums
from lcsm_jax.eos.inputs import unbroadcast


def _suffix_sum(a):
    """Σ_{v≥u} a_v along the chunk axis (-2)."""
    return jnp.flip(log_sums.cumsum(jnp.flip(a, -2)), -2)  # a cotangent: no phase wrapping


def _strict(pair):
    C = pair.shape[-1]
    return pair & ~jnp.eye(C, dtype=bool).reshape((1,) * (pair.ndim - 2) + (C, C))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def intra(fn, s, e, i, lk, ld, pair):
    """fn(s, e, i, lk, ld, pair): the intra-chunk outputs [..., C, D], with `lk`/`ld`
    [..., C, X] the per-step log-decays (None when absent) and `pair` the [..., C, C] mask."""
    return fn(s, e, i, lk, ld, pair)


def _intra_fwd(fn, s, e, i, lk, ld, pair):
    # Complex decays: s, e, i enter as complex so that their cotangents keep the imaginary part
    # the decay gradient needs (the real inputs get the real part back).
    dtype = jnp.result_type(s, e, i, *(g for g in (lk, ld) if g is not None))
    sc, ec, ic = (a.astype(dtype) for a in (s, e, i))
    y_strict, vjp = jax.vjp(lambda s, e, i: fn(s, e, i, lk, ld, _strict(pair)), sc, ec, ic)
    diag = jnp.diagonal(pair, axis1=-2, axis2=-1)[..., None]  # [..., C, 1]: (t, t) counted
    se = jnp.where(diag, jnp.sum(sc * ec, axis=-1, keepdims=True), 0)
    y = y_strict + se * ic
    # The primal inputs ride along for their shapes and dtypes (they are kept anyway).
    return y, (sc, ec, ic, y_strict, se, diag, vjp, (s, e, i, lk, ld))


def _intra_bwd(fn, res, dy):
    del fn
    sc, ec, ic, y_strict, se, diag, vjp, primals = res
    shapes = tuple(None if a is None else (a.shape, a.dtype) for a in primals)
    dy = dy.astype(y_strict.dtype)
    ds, de, di = vjp(dy)  # pairs j < t only
    # K axis: query side s ⊙ ∂s, key side e ⊙ ∂e; D axis: query side ∂y ⊙ y, key side i ⊙ ∂i.
    # `back` below sums them to the decays' shapes (a scalar decay: over K as well).
    dlk = None if shapes[3] is None else _suffix_sum(sc * ds - ec * de)
    dld = None if shapes[4] is None else _suffix_sum(dy * y_strict - ic * di)
    # The diagonal pairs (t, t): y_t += (s_t · e_t) i_t, with no decay.
    dyi = jnp.where(diag, jnp.sum(dy * ic, axis=-1, keepdims=True), 0)
    ds, de, di = ds + dyi * ec, de + dyi * sc, di + se * dy

    def back(g, spec):
        if spec is None:
            return None
        shape, dtype = spec
        if not jnp.issubdtype(dtype, jnp.complexfloating) and jnp.iscomplexobj(g):
            g = jnp.real(g)
        return unbroadcast(g, shape).astype(dtype)

    grads = [back(g, spec) for g, spec in zip((ds, de, di, dlk, dld), shapes, strict=True)]
    return (*grads, None)


intra.defvjp(_intra_fwd, _intra_bwd)
