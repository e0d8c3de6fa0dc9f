"""Selective SSM ops in mamba_ssm's conventions: `selective_scan` (Mamba-1's ``selective_scan_fn``
/ ``selective_scan_ref``) and `ssd` (Mamba-2's ``mamba_chunk_scan_combined``).

EOS stages (SPEC §1, §3):
- selective_scan with B and C shared by the channels ([B,N,L], or [B,G,N,L]: one head per group):
  K = N, D = the group's channels, e = B_t, i = Δ_t ⊙ u_t, log o[n, d] = Δ_t[d] A[d, n] (a full
  K×D decay given as `eos.ProductDecay(d=Δ, p=Aᵀ)`, built step by step), s = C_t: the memory
  is mamba_ssm's state transposed, and B_t, C_t are never copied per channel.
- selective_scan with a fixed per-channel B or C ([D,N]): one head per channel d, K = N, D = 1:
  e = B[d], i = Δ_t[d] u_t[d], log o = Δ_t[d] A[d, :] (a K-wise decay per head), s = C[d].
- ssd: one head per Mamba-2 head, K = N, D = P (headdim): e = B_t (its group), i = Δ_t x_t,
  log o = Δ_t A_h (a scalar decay per head), s = C_t. mamba_ssm's state is [P, N]; the EOS memory
  is its transpose [N, P], so initial and final states are transposed at the boundary.
Both compute in float32 whatever the input dtype (as mamba_ssm) and return the dtype of u / x.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcsm_jax import eos
from lcsm_jax.eos import api
from lcsm_jax.ops._checks import check_rank, check_real, check_shape


def _delta(op, delta_BxLxC, bias, bias_name, softplus):
    """Δ [B, L, C] float32: softplus(delta + bias) or delta + bias; bias [C] or None."""
    delta = jnp.asarray(delta_BxLxC, jnp.float32)
    if bias is not None:
        check_shape(op, bias_name, bias, delta.shape[-1:])
        delta = delta + jnp.asarray(bias, jnp.float32)[None, None]
    return jax.nn.softplus(delta) if softplus else delta


def _groups(x, name, Bsz, Dch, N, L) -> int | None:
    """Checks B or C of selective_scan; its channel groups: None for a fixed per-channel [D, N],
    1 for [B, N, L], G for [B, G, N, L]."""
    x = jnp.asarray(x)
    check_real("selective_scan", name, x)
    if x.ndim == 2:
        check_shape("selective_scan", name, x, (Dch, N), "[D,N]")
        return None
    if x.ndim == 3:
        check_shape("selective_scan", name, x, (Bsz, N, L), "[B,N,L]")
        return 1
    if x.ndim == 4:
        G = x.shape[1]
        if G < 1 or Dch % G:
            raise ValueError(f"selective_scan: {name} has {G} groups, which must divide D={Dch}")
        check_shape("selective_scan", name, x, (Bsz, G, N, L), "[B,G,N,L]")
        return G
    raise ValueError(f"selective_scan: {name} must be [D,N], [B,N,L] or [B,G,N,L], got {x.shape}")


def _per_channel(x, G, Bsz, Dch, N, L):
    """A checked B or C (`G` from `_groups`) as [B, L, D, N] float32."""
    x = jnp.asarray(x, jnp.float32)
    if G is None:
        return jnp.broadcast_to(x[None, None], (Bsz, L, Dch, N))
    return jnp.repeat(_grouped(x, Bsz, G, N, L), Dch // G, axis=2)


def _grouped(x, Bsz, G, N, L):
    """A shared B or C ([B,N,L] or [B,G,N,L]) as [B, L, G, N] float32."""
    x = jnp.asarray(x, jnp.float32).reshape(Bsz, G, N, L)
    return jnp.transpose(x, (0, 3, 1, 2))


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
    *,
    segment_ids=None,
    backend="auto",
    chunk_size=None,
):
    """Mamba's selective scan (Gu and Dao, arXiv 2312.00752), as mamba_ssm's
    ``selective_scan_ref``: u, delta [B, D, L]; A [D, N] (real); B, C [D, N], [B, N, L] or
    [B, G, N, L]; D [D]; z [B, D, L]; delta_bias [D].

    ``x_t = exp(Δ_t A) ⊙ x_{t-1} + Δ_t B_t u_t``, ``y_t = C_t · x_t``, out = (y + D u) · silu(z),
    with Δ = softplus(delta + delta_bias) if delta_softplus. `segment_ids` [B, L] (an lcsm_jax
    extension) restarts the state where the id changes. Returns out [B, D, L] in u's dtype, and
    with return_last_state the final state [B, D, N] float32. Complex A is not supported.
    """
    u = jnp.asarray(u)
    check_rank("selective_scan", "u", u, 3, "[B,D,L]")
    Bsz, Dch, L = u.shape
    check_shape("selective_scan", "delta", delta, u.shape, "[B,D,L]")
    A = jnp.asarray(A)
    check_real("selective_scan", "A", A)
    check_rank("selective_scan", "A", A, 2, "[D,N]")
    if A.shape[0] != Dch:
        raise ValueError(f"selective_scan: A must be [D={Dch}, N], got {A.shape}")
    N = A.shape[1]
    delta_BxLxD = jnp.transpose(jnp.asarray(delta), (0, 2, 1))
    dt_BxLxD = _delta("selective_scan", delta_BxLxD, delta_bias, "delta_bias", delta_softplus)
    u_BxLxD = jnp.transpose(u.astype(jnp.float32), (0, 2, 1))
    scan = dict(segment_ids=segment_ids, backend=backend, chunk_size=chunk_size)
    G_B, G_C = _groups(B, "B", Bsz, Dch, N, L), _groups(C, "C", Bsz, Dch, N, L)
    G = G_B if G_B == G_C else None  # the groups sharing B_t and C_t, if B and C agree
    if G is None or backend in ("chunked", "pallas"):
        # A per-channel B or C (or a backend asked for that reads a K-wise decay faster than a
        # factored K×D one): one head per channel.
        e = _per_channel(B, G_B, Bsz, Dch, N, L)
        s = _per_channel(C, G_C, Bsz, Dch, N, L)
        log_o = dt_BxLxD[..., None, None] * jnp.asarray(A, jnp.float32)[None, None, :, :, None]
        y, last = api.eos_scan(e, (dt_BxLxD * u_BxLxD)[..., None], log_o, s, **scan)
        out, last = y[..., 0], last[..., 0]
    else:  # one head per group of channels sharing B_t and C_t: memory [N, D/G]
        P = Dch // G
        heads = lambda x: x.reshape(Bsz, L, G, P)  # noqa: E731
        a_GxNxP = jnp.swapaxes(jnp.asarray(A, jnp.float32).reshape(G, P, N), 1, 2)
        log_o = eos.ProductDecay(d=heads(dt_BxLxD), p=a_GxNxP[None, None])
        e, s = _grouped(B, Bsz, G, N, L), _grouped(C, Bsz, G, N, L)
        y, last = api.eos_scan(e, heads(dt_BxLxD * u_BxLxD), log_o, s, **scan)
        out = y.reshape(Bsz, L, Dch)
        last = jnp.swapaxes(last, 2, 3).reshape(Bsz, Dch, N)
    if D is not None:
        check_shape("selective_scan", "D", D, (Dch,), "[D]")
        out = out + u_BxLxD * jnp.asarray(D, jnp.float32)[None, None]
    if z is not None:
        check_shape("selective_scan", "z", z, u.shape, "[B,D,L]")
        out = out * jax.nn.silu(jnp.transpose(jnp.asarray(z, jnp.float32), (0, 2, 1)))
    out = jnp.transpose(out, (0, 2, 1)).astype(u.dtype)
    return (out, last) if return_last_state else out


def ssd(
    x,
    dt,
    A,
    B,
    C,
    chunk_size=None,
    D=None,
    z=None,
    dt_bias=None,
    initial_states=None,
    seq_idx=None,
    dt_softplus=False,
    dt_limit=(0.0, float("inf")),
    return_final_states=False,
    *,
    backend="auto",
):
    """Mamba-2's state space duality (Dao and Gu, arXiv 2405.21060), as mamba_ssm's
    ``mamba_chunk_scan_combined``: x [B, L, H, P], dt [B, L, H], A [H] (real, < 0),
    B, C [B, L, G, N] (G groups divide H), D [H] or [H, P], z [B, L, H, P], dt_bias [H],
    initial_states [B, H, P, N], seq_idx [B, L] (the state restarts where it changes).

    ``h_t = exp(Δ_t A_h) h_{t-1} + Δ_t x_t B_tᵀ`` (h [P, N]), ``y_t = h_t C_t``,
    out = (y + D x) · silu(z), with Δ = clip(softplus(dt + dt_bias), dt_limit). chunk_size is the
    chunked backend's (None: the backend's default). Returns out [B, L, H, P] in x's dtype, and
    with return_final_states the final state [B, H, P, N] float32.
    """
    x = jnp.asarray(x)
    check_rank("ssd", "x", x, 4, "[B,L,H,P]")
    Bsz, L, H, P = x.shape
    check_shape("ssd", "dt", dt, (Bsz, L, H), "[B,L,H]")
    check_shape("ssd", "A", A, (H,), "[H]")
    check_real("ssd", "A", A)
    B, C = jnp.asarray(B, jnp.float32), jnp.asarray(C, jnp.float32)
    check_rank("ssd", "B", B, 4, "[B,L,G,N]")
    G, N = B.shape[2], B.shape[3]
    if H % G:
        raise ValueError(f"ssd: B has {G} groups, which must divide the {H} heads")
    check_shape("ssd", "B", B, (Bsz, L, G, N), "[B,L,G,N]")
    check_shape("ssd", "C", C, (Bsz, L, G, N), "[B,L,G,N]")
    delta = _delta("ssd", dt, dt_bias, "dt_bias", dt_softplus)
    if tuple(dt_limit) != (0.0, float("inf")):
        delta = jnp.clip(delta, dt_limit[0], dt_limit[1])
    x32 = x.astype(jnp.float32)
    h0 = None
    if initial_states is not None:
        check_shape("ssd", "initial_states", initial_states, (Bsz, H, P, N), "[B,H,P,N]")
        h0 = jnp.swapaxes(jnp.asarray(initial_states, jnp.float32), -1, -2)
    y, last = api.eos_scan(
        jnp.repeat(B, H // G, axis=2),
        delta[..., None] * x32,
        (delta * jnp.asarray(A, jnp.float32)[None, None])[..., None, None],
        jnp.repeat(C, H // G, axis=2),
        initial_state=h0,
        segment_ids=seq_idx,
        backend=backend,
        chunk_size=chunk_size,
    )
    if D is not None:
        D = jnp.asarray(D, jnp.float32)
        if D.shape not in ((H,), (H, P)):
            raise ValueError(f"ssd: D must be [H] or [H,P] = {(H,)} or {(H, P)}, got {D.shape}")
        y = y + x32 * (D[:, None] if D.ndim == 1 else D)[None, None]
    if z is not None:
        check_shape("ssd", "z", z, x.shape, "[B,L,H,P]")
        y = y * jax.nn.silu(jnp.asarray(z, jnp.float32))
    y = y.astype(x.dtype)
    return (y, jnp.swapaxes(last, -1, -2)) if return_final_states else y
