"""The delta-rule scan: an EOS recurrence whose oscillation is a gated Householder transition.

In the paper's terms (SPEC §1) the memory update m_t = o_t ⊙ m_{t-1} + e_t i_tᵀ becomes

    S_t = (I - β_t k_t k_tᵀ) Diag(α_t) S_{t-1} + β_t k_t v_tᵀ,    o_t = S_tᵀ q_t

Expand e = β k, input i = v, shrink s = q as before; the oscillation, a diagonal decay in every
other EOS model, is here the diagonal α times a rank-one correction (diagonal-plus-low-rank).
α = 1 is DeltaNet (Yang et al., arXiv 2406.06484), a scalar α_t per head Gated DeltaNet
(arXiv 2412.06464), one α per key Kimi Delta Attention (arXiv 2510.26692).
"""

from __future__ import annotations

import functools

import jax

from lcsm_jax.eos import delta_chunked, delta_reference, sequence
from lcsm_jax.eos.delta_inputs import DeltaProblem, delta_problem

_BACKENDS = {"reference": delta_reference.scan, "chunked": delta_chunked.scan}
DELTA_BACKENDS = (*_BACKENDS, "auto")


def delta_scan(
    q,
    k,
    v,
    beta,
    log_alpha=None,
    *,
    initial_state=None,
    segment_ids=None,
    segment_initial_states=None,
    num_segments=None,
    return_segment_states=False,
    backend="auto",
    chunk_size=None,
    sequence_axis=None,
):
    """Runs the (gated) delta rule over time.

    Args:
      q, k: [B, T, H, K] (q already scaled; k usually L2-normalised, as the papers do).
      v: [B, T, H, V].
      beta: [B, T, H], the writing strength (in (0, 2) the transition is a contraction for unit k).
      log_alpha: None (DeltaNet), [B, T, H] (Gated DeltaNet) or [B, T, H, K] (KDA): log gates,
        usually <= 0; gates of -20 per step and below are exact (no prefix-sum cancellation).
      initial_state: [B, H, K, V], the state before the first token; zeros if None.
      segment_ids: [B, T] ints; the state restarts where the id changes (from zeros, or from the
        segment's row of `segment_initial_states`).
      segment_initial_states: [N, H, K, V] with B = 1 and segment_ids the sequence index
        0..N-1 of each token (fla's cu_seqlens); each sequence starts from its own state.
      num_segments: N when asking for per-segment states without giving initial ones.
      return_segment_states: also return the state at the end of each segment, [N, H, K, V].
      backend: "reference" (sequential), "chunked" (the WY form over chunks of `chunk_size`,
        default 16, or 8 with a per-key gate, with a rematerialised backward pass) or "auto"
        (chunked for T > 1).
      sequence_axis: None, or the mesh axis T is split over inside ``jax.shard_map`` (as in
        `eos_scan`): o for the local block and the global final state, exactly; the K×K block
        transitions and K×V block states cross the axis in one all-gather. Not with
        per-segment states.

    Returns:
      ``(o, final_state)`` or, with return_segment_states, ``(o, final_state, segment_states)``:
      o [B, T, H, V] in v's dtype; states in float32 (float64 for float64 inputs).
    """
    if backend not in DELTA_BACKENDS:
        raise ValueError(
            f"delta_scan: unknown backend {backend!r}; valid: {', '.join(DELTA_BACKENDS)}"
        )
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
    ):
        raise ValueError(f"delta_scan: chunk_size must be a positive int, got {chunk_size!r}")
    p = delta_problem(
        q, k, v, beta, log_alpha, initial_state, segment_ids, segment_initial_states, num_segments
    )
    context = sequence.current()
    if sequence_axis is None and context is not None and not sequence.varies(p.q, p.k, p.v):
        if segment_initial_states is not None or num_segments is not None:
            raise ValueError("delta_scan: sequence parallelism does not support per-segment states")

        def split(q, k, v, beta, log_alpha, segment_ids, initial_state, sequence_axis):
            return delta_scan(
                q, k, v, beta, log_alpha, initial_state=initial_state, segment_ids=segment_ids,
                return_segment_states=return_segment_states, backend=backend,
                chunk_size=chunk_size, sequence_axis=sequence_axis,
            )  # fmt: skip

        timed = (q, k, v, beta, log_alpha, segment_ids)
        return sequence.wrapped(split, context, timed, (initial_state,), "delta_scan")
    if backend == "auto":
        backend = "chunked" if p.q.shape[1] > 1 else "reference"
    arrays = p._replace(per_segment=None, num_segments=None, out_dtype=None)
    static = (p.per_segment, p.num_segments, p.out_dtype)
    if sequence_axis is not None:
        if return_segment_states:
            raise ValueError(
                "delta_scan: return_segment_states is not supported with sequence_axis"
            )

        def run(q):
            arr = q._replace(per_segment=None, num_segments=None, out_dtype=None)
            o, S, _ = _run(arr, static, backend, chunk_size, False)
            return o, S

        return sequence.split_delta(p, run, sequence_axis, segment_ids)
    o, S, finals = _run(arrays, static, backend, chunk_size, bool(return_segment_states))
    return (o, S, finals) if return_segment_states else (o, S)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _run(arrays: DeltaProblem, static, backend: str, chunk_size, want_finals: bool):
    """Jitted so that eager calls reuse compiled backends; the problem's flags stay static."""
    per_segment, num_segments, out_dtype = static
    p = arrays._replace(per_segment=per_segment, num_segments=num_segments, out_dtype=out_dtype)
    o, S, finals = _BACKENDS[backend](p, chunk_size, want_finals)
    return o.astype(out_dtype), S, finals


def delta_step(q_t, k_t, v_t, beta_t, log_alpha_t, state):
    """One token of `delta_scan` for decoding: q_t, k_t [B,H,K], v_t [B,H,V], beta_t [B,H],
    log_alpha_t None, [B,H] or [B,H,K]; state [B,H,K,V]. Returns (o_t [B,H,V], state)."""
    expand = lambda x: None if x is None else x[:, None]  # noqa: E731
    o, S = delta_scan(
        expand(q_t), expand(k_t), expand(v_t), expand(beta_t), expand(log_alpha_t),
        initial_state=state, backend="reference",
    )  # fmt: skip
    return o[:, 0], S
