"""Containers passed between the stages of an EOS layer, and the layer's recurrent state."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

Array = jax.Array


class EOSState(NamedTuple):
    """The recurrent state of an EOS layer (also its decoding cache).

    memory: m [B, H, K_mem, D] float32 (complex64 for complex layers); K_mem = 2K for o_type 11.
      With a data-independent e (a K×D parameter E) the memory is stored with E factored out
      (m = E ⊙ memory), since E is folded into the read; round trips through the layer are exact.
    position: [B] int32, absolute position of the next token (o_type 11 rotates by it).
    lse: [B, H, K] float32 running log-sum-exp of the o_type 12 cumulative softmax, else None.
    """

    memory: Array
    position: Array
    lse: Array | None = None


class Context(NamedTuple):
    """Per-call facts the stages may need: positions [B, T] int32, resets [B, T] bool (memory
    restarts at t; None without segment ids), and the incoming o_type 12 log-sum-exp (or None)."""

    position_BxT: Array
    reset_BxT: Array | None
    lse_BxHxK: Array | None


class Terms(NamedTuple):
    """The EOS inputs as the stages build them up, per head.

    e [B,T,H,K]; i [B,T,H,D]; s [B,T,H,K] (vector read), [1,1,H,K,D] (data-independent elementwise
    read) or None (read only through `fold`); log_o: what `eos.eos_scan` takes; fold: a
    data-independent [1,1,H,K,D] factor of e (a K×D parameter), folded into the read; lse: the
    outgoing o_type 12 log-sum-exp [B,H,K] or None.
    """

    e: Array | None = None
    i: Array | None = None
    s: Array | None = None
    log_o: Any = 0
    fold: Array | None = None
    lse: Array | None = None
