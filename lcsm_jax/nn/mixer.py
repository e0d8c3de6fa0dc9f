"""`Mixer`: the interface every sequence mixer of the catalogue satisfies (EOS layers, M2, the
softmax-attention baseline), so the language model can hold any of them."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax


@runtime_checkable
class Mixer(Protocol):
    """A causal sequence mixer x [B, T, M] -> y [B, T, M] that also decodes token by token.

    ``y = mixer(x, segment_ids=ids)`` mixes a whole sequence (ids [B, T] ints or None: with ids,
    nothing mixes across packed sequences, or the mixer raises ValueError if it cannot keep them
    apart); ``cache = mixer.init_cache(B)`` is the state before the first token and
    ``y_t, cache = mixer.step(x_t, cache)`` mixes one token x_t [B, M]. Stepping through a
    sequence gives the parallel output. `isinstance(obj, Mixer)` checks that the three methods
    exist, not their signatures.
    """

    def __call__(
        self, x_BxTxM: jax.Array, *, segment_ids: jax.Array | None = None
    ) -> jax.Array: ...

    def init_cache(self, batch_size: int) -> Any: ...

    def step(self, x_BxM: jax.Array, cache: Any) -> tuple[jax.Array, Any]: ...
