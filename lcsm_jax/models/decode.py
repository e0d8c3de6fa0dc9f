"""Sampling from a `LanguageModel` with its recurrent `init_cache` / `step`: O(1) work per token.

`prefill` feeds a prompt token by token (one `lax.scan`), `decode` samples `num_tokens` more
(another `lax.scan`); both are jitted once per shape. Sampling is greedy at temperature 0, else
categorical over logits / temperature restricted to the `top_k` largest (0: all).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lcsm_jax.nn.params import ModelParams


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # 0: greedy
    top_k: int = 0  # 0: the whole vocabulary

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


def sample(logits_BxV, key, config: SamplingConfig):
    """[B] token ids drawn from `logits_BxV` under `config`."""
    if config.temperature == 0 or config.top_k == 1:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits = logits_BxV.astype(jnp.float32) / config.temperature
    if config.top_k and config.top_k < logits.shape[-1]:
        kth_B1 = jax.lax.top_k(logits, config.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth_B1, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


class Decoder:
    """Jitted `prefill(params, prompt_BxP) -> (logits_BxV, cache)` and
    `decode(params, logits_BxV, cache, key) -> (tokens_BxN, logits_BxV, cache)`."""

    def __init__(self, params: ModelParams, sampling: SamplingConfig, num_tokens: int):
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        self.sampling, self.num_tokens = sampling, num_tokens

        def prefill(p, prompt_BxP):
            if prompt_BxP.ndim != 2 or prompt_BxP.shape[1] < 1:
                raise ValueError(f"the prompt must be [B, P>=1] tokens, got {prompt_BxP.shape}")
            model = params.model(p)

            def feed(cache, tokens_B):
                logits_BxV, cache = model.step(tokens_B, cache)
                return cache, logits_BxV

            cache = model.init_cache(prompt_BxP.shape[0])
            cache, logits_PxBxV = jax.lax.scan(feed, cache, prompt_BxP.T)
            return logits_PxBxV[-1], cache

        def decode(p, logits_BxV, cache, key):
            model = params.model(p)

            def draw(carry, step_key):
                logits, cache = carry
                tokens_B = sample(logits, step_key, sampling)
                logits, cache = model.step(tokens_B, cache)
                return (logits, cache), tokens_B

            keys = jax.random.split(key, num_tokens)
            (logits_BxV, cache), tokens_NxB = jax.lax.scan(draw, (logits_BxV, cache), keys)
            return tokens_NxB.T, logits_BxV, cache

        self.prefill = jax.jit(prefill)
        self.decode = jax.jit(decode)

    def generate(self, p, prompt_BxP, key):
        """[B, num_tokens] tokens continuing the prompt."""
        logits, cache = self.prefill(p, prompt_BxP)
        return self.decode(p, logits, cache, key)[0]
