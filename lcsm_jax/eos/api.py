"""The EOS dispatcher: one public scan, one public step, backends resolved once per call site.

Every backend is a pure function `scan(problem, chunk_size) -> (y, final_memory)` over the canonical
`Problem` of `inputs.py`; this module only validates, resolves the backend name and casts back.
One token (T == 1, the decode path of `eos_step`) is one recurrence step in every backend; the
dispatcher runs it as one `reference.step`, with no loop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lcsm_jax.eos import (
    associative,
    chunked,
    dispatch,
    folded_read,
    inputs,
    pallas,
    recurrent,
    reference,
    sequence,
)
from lcsm_jax.eos.product import ProductDecay

_BACKENDS = {
    "reference": reference.scan,
    "associative": associative.scan,
    "chunked": chunked.scan,
    "pallas": pallas.scan,
    "recurrent": recurrent.scan,
}
BACKENDS = (*_BACKENDS, "auto")


def resolve_backend(backend: str, problem: inputs.Problem, platform: str | None = None) -> str:
    """Turns `backend` (possibly "auto") into a concrete backend that supports `problem`.

    "auto" looks the problem's class up in the platform's measured table (`dispatch.py`,
    `tables/<platform>.json`, written by `benchmarks/eos_backends.py --write-table`), and falls
    back to the rules for classes not measured: chunked wherever the structure allows it, else
    the recurrent backend on CPU and the associative scan on GPU/TPU. `explain` says which.
    (`eos_scan` with "auto" first folds a fixed elementwise read or an e without a time axis
    under a row-independent real decay into a one-row memory, `folded_read.py`; this function
    names the backend of the unfolded problem, `explain` the one that runs.)

    The answer for a named backend does not depend on T, so a backend that rejects a problem
    rejects it at T == 1 too, although `eos_scan` then runs one reference step whatever the
    backend.
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if backend == "auto":
        return dispatch.choose(problem, platform or jax.default_backend()).backend
    if backend == "chunked" and (reason := chunked.unsupported_reason(problem)) is not None:
        raise ValueError(
            f"backend 'chunked' does not support {reason}; use 'reference', 'associative' or 'auto'"
        )
    if backend == "pallas" and (reason := pallas.unsupported_reason(problem, platform)) is not None:
        raise ValueError(
            f"backend 'pallas' does not support {reason}; use 'reference', 'associative' or 'auto'"
        )
    return backend


def eos_scan(
    e,
    i,
    log_o,
    s,
    *,
    initial_state=None,
    segment_ids=None,
    backend: str = "auto",
    chunk_size: int | None = None,
    sequence_axis=None,
):
    """Runs the EOS recurrence ``m_t = o_t ⊙ m_{t-1} + e_t i_tᵀ``, ``y_t = m_tᵀ s_t`` over time.

    Args:
      e: expand state [B, T, H, K]; size-1 B, T or H dims share it (an e without a time axis,
        the same at every step, lets "auto" fold a none/scalar/D-wise real decay to K = 1).
      i: input state [B, T, H, D].
      log_o: natural log of the oscillation: an array broadcastable to [B, T, H, K, D] (trailing
        size-1 dims give scalar-per-head, K-wise or D-wise decay; leading size-1 dims are
        data-independent), or ``Decay(k=[B,T,H,K], d=[B,T,H,D])`` for ``log o[r,c] = k[r] + d[c]``,
        or ``ProductDecay(k, d, p, fn, scale)`` for a full K×D decay
        ``log o[r,c] = scale · fn(k[r] d[c] p[r,c])`` (Mamba's Δ ⊗ A, the paper's o_types 6-9),
        which the sequential backends build step by step (never as a [B,T,H,K,D] array), or
        ``0`` for no decay. Real decays satisfy ``log_o <= 0``; complex values (rotations) need
        complex e, i, s.
      s: shrink state [B, T, H, K] (``y[c] = Σ_r s[r] m[r,c]``), or a rank-5 array broadcastable to
        [B, T, H, K, D] (elementwise read ``y[c] = Σ_r s[r,c] m[r,c]``).
      initial_state: memory before t=0, [B, H, K, D]; zeros if None.
      segment_ids: [B, T] integers; the memory restarts from zero where the id changes from t-1
        to t (packed sequences).
      backend: "reference", "associative", "chunked", "pallas", "recurrent" or "auto".
        "recurrent" is the sequential scan with a checkpointed reverse-scan gradient (every
        structure; O(T/C·K·D) memory where the reference's autodiff keeps all T memories).
        Every backend supports reverse-mode autodiff (grad, vjp) in every input; "chunked",
        "pallas" and "recurrent" (so "auto" where it picks them, see `explain`) define their
        gradients with ``jax.custom_vjp``, so forward mode (jvp, jacfwd) needs "reference" or
        "associative". "auto" runs the fastest backend measured for the problem's class on this
        platform (`dispatch.py`); under a real decay that is the same for every row (none,
        scalar, D-wise), a fixed elementwise s or an e without a time axis it first folds into
        a one-row memory, exactly (`folded_read.py`: K times less work, and the chunked matmul
        form where the K×D problem would need a scan).
      chunk_size: chunk length of the chunked backend (default 64, or with "auto" the measured
        best), the checkpoint interval of the recurrent backend, or the time block of the
        pallas backend (default 16 for its chunked kernel and
        on TPU, 64 for its GPU scan).
      sequence_axis: None, or the name of a mesh axis over which T is split, when called inside
        ``jax.shard_map`` (each device passes its block of e, i, log_o, s and segment_ids, and
        the same initial_state). The result is then exactly the unsplit call's: y for the local
        block and the global final state on every device, with gradients across devices. One
        all-gather of the blocks' K×D summaries crosses the axis (`sequence.py` says how and
        why); each device scans its block twice. Inside ``eos.sequence_parallel(mesh, axis)``
        a call outside shard_map wraps itself in one (models need no change).

    Returns:
      ``(y, final_state)``: y [B, T, H, D] in the dtype of ``i``; final_state [B, H, K, D] in
      the accumulation dtype. That is float32 (complex64 for complex inputs) for float32,
      bfloat16 or float16 inputs, and float64 (complex128) for float64 (complex128) inputs
      under ``jax_enable_x64``: every backend but "pallas" (whose kernels accumulate in
      float32; "auto" never picks it then) then computes and accumulates in float64.

    Raises:
      ValueError / TypeError naming the offending argument for bad shapes, dtypes, backends,
      chunk sizes or segment ids.
    """
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    problem = inputs.problem(e, i, log_o, s, initial_state, segment_ids)
    context = sequence.current()
    if sequence_axis is None and context is not None and not dispatch.in_shard_map(problem):

        def split(e, i, log_o, s, segment_ids, initial_state, sequence_axis):
            return eos_scan(
                e, i, log_o, s, initial_state=initial_state, segment_ids=segment_ids,
                backend=backend, chunk_size=chunk_size, sequence_axis=sequence_axis,
            )  # fmt: skip

        timed = (e, i, log_o, s, segment_ids)
        return sequence.wrapped(split, context, timed, (initial_state,), "eos_scan")
    if backend == "auto" and sequence_axis is None and folded_read.applies(problem):
        return _run_folded(problem, chunk_size)
    if backend == "auto" and sequence_axis is None and folded_read.applies_fixed_e(problem):
        return _run_fixed_e(problem, chunk_size)
    if backend == "auto":  # the measured backend, and its chunk size unless one is given
        choice = dispatch.choose(problem, jax.default_backend())
        name, chunk_size = choice.backend, chunk_size or choice.chunk_size
    else:
        name = resolve_backend(backend, problem)
    if problem.e.shape[1] == 1:
        # One token is one step in every backend; the reference takes it without a loop, and
        # every backend name shares one compiled program.
        name, chunk_size = "reference", None
    if sequence_axis is not None:
        run = lambda p: _run(p, name, chunk_size)  # noqa: E731
        return sequence.split_eos(problem, run, sequence_axis, segment_ids)
    return _run(problem, name, chunk_size)


def explain(e, i, log_o, s, *, initial_state=None, segment_ids=None, platform=None) -> str:
    """What `eos_scan(..., backend="auto")` runs for these inputs, and why (table or rule).

    Takes the arguments of `eos_scan` (and `platform`, default: JAX's default backend).
    """
    problem = inputs.problem(e, i, log_o, s, initial_state, segment_ids)
    platform = platform or jax.default_backend()
    folded = ""
    if folded_read.applies(problem) or folded_read.applies_fixed_e(problem):
        cls = dispatch.ProblemClass.of(problem)
        what = "fixed elementwise read" if folded_read.applies(problem) else "e without a time axis"
        folded = (
            f"{what} ({cls.structure} decay, K~{cls.K}) folded into a one-row memory "
            "(eos/folded_read.py), then "
        )
        fold = folded_read.fold if folded_read.applies(problem) else folded_read.recurrence_of_i
        problem = fold(problem)
    choice = dispatch.choose(problem, platform)
    cls = dispatch.ProblemClass.of(problem)
    chunk = "" if choice.chunk_size is None else f", chunk_size={choice.chunk_size}"
    return (
        f"auto -> {folded}{choice.backend}{chunk} on {platform} for "
        f"{cls.structure} decay, {cls.read} read, {cls.dtype}, K~{cls.K} D~{cls.D} T~{cls.T}: "
        f"{choice.reason}"
    )


@functools.partial(jax.jit, static_argnums=(1, 2))
def _run(problem: inputs.Problem, name: str, chunk_size: int | None):
    """Jitted so that eager calls reuse compiled backends (inside an outer jit it is inlined)."""
    y, m = _BACKENDS[name](problem, chunk_size)
    return y.astype(problem.out_dtype), m


@functools.partial(jax.jit, static_argnums=(1,))
def _run_folded(problem: inputs.Problem, chunk_size: int | None):
    """`auto` on a fixed elementwise read with a row-independent decay (`folded_read`): the
    output from the K = 1 folded problem on its own measured backend, the K×D final memory
    formed directly."""
    folded = folded_read.fold(problem)
    choice = dispatch.choose(folded, jax.default_backend())
    y, _ = _BACKENDS[choice.backend](folded, chunk_size or choice.chunk_size)
    return y.astype(problem.out_dtype), folded_read.final_memory(problem)


@functools.partial(jax.jit, static_argnums=(1,))
def _run_fixed_e(problem: inputs.Problem, chunk_size: int | None):
    """`auto` on an e without a time axis under a row-independent decay (`folded_read`): the
    K = 1 recurrence of i on its own measured backend, the read and the initial memory's share
    added outside it."""

    def run(folded):
        choice = dispatch.choose(folded, jax.default_backend())
        return _BACKENDS[choice.backend](folded, chunk_size or choice.chunk_size)

    y, m = folded_read.scan_fixed_e(problem, run)
    return y.astype(problem.out_dtype), m


def _add_time_axis(x, rank: int):
    """Left-pads `x` to `rank` dims and inserts a time axis at 1 (for log_o_t / s_t)."""
    x = jnp.asarray(x)
    x = x.reshape((1,) * (rank - x.ndim) + x.shape) if x.ndim < rank else x
    return x[:, None]


def eos_step(e_t, i_t, log_o_t, s_t, state):
    """One recurrence step: ``state' = o_t ⊙ state + e_t i_tᵀ``, ``y_t = state'ᵀ s_t``.

    Args are those of ``eos_scan`` without the T axis: e_t [B,H,K], i_t [B,H,D], log_o_t
    broadcastable to [B,H,K,D] (or a ``Decay`` with k [B,H,K], d [B,H,D], a ``ProductDecay``
    with k [B,H,K], d [B,H,D], p broadcastable to [B,H,K,D], or ``0``), s_t [B,H,K]
    or an elementwise [B,H,K,D], and state [B,H,K,D]. It is ``eos_scan`` on T = 1 (one
    reference step) with the time axis added and removed, so chaining it over t reproduces
    ``eos_scan``.

    Returns:
      ``(y_t, state)``: y_t [B,H,D] in the dtype of ``i_t``; state in the accumulation dtype
      (float32 or complex64; float64 or complex128 for float64 or complex128 inputs).
    """
    for x, name, rank in ((e_t, "e_t", 3), (i_t, "i_t", 3)):
        if jnp.ndim(x) != rank:
            raise ValueError(f"{name} must have rank {rank} ([B,H,K]/[B,H,D]), got {jnp.shape(x)}")
    if jnp.ndim(s_t) not in (3, 4):
        raise ValueError(f"s_t must be [B,H,K] or elementwise [B,H,K,D], got {jnp.shape(s_t)}")
    if state is None:
        raise ValueError("state must be a [B,H,K,D] array (use zeros for an empty memory)")
    if isinstance(log_o_t, inputs.Decay):
        log_o = inputs.Decay(
            k=None if inputs.is_zero_literal(log_o_t.k) else _add_time_axis(log_o_t.k, 3),
            d=None if inputs.is_zero_literal(log_o_t.d) else _add_time_axis(log_o_t.d, 3),
        )
    elif isinstance(log_o_t, ProductDecay):
        timed = lambda x, rank: None if x is None else _add_time_axis(x, rank)  # noqa: E731
        log_o = ProductDecay(
            k=timed(log_o_t.k, 3), d=timed(log_o_t.d, 3), p=timed(log_o_t.p, 4),
            fn=log_o_t.fn, scale=log_o_t.scale,
        )  # fmt: skip
    elif inputs.is_zero_literal(log_o_t):
        log_o = 0
    else:
        if jnp.ndim(log_o_t) > 4:
            raise ValueError(f"log_o_t must broadcast to [B,H,K,D], got {jnp.shape(log_o_t)}")
        log_o = _add_time_axis(log_o_t, 4)
    e, i, s = (jnp.asarray(x)[:, None] for x in (e_t, i_t, s_t))
    y, m = _run(inputs.problem(e, i, log_o, s, state, suffix="_t"), "reference", None)
    return y[:, 0], m
