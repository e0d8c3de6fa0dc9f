"""Every full block of the catalogue inside the language model: it trains under jit with the batch
sharded over 8 fake CPU devices, and greedy decoding through its cache equals the parallel model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lcsm_jax import catalogue
from lcsm_jax.models.lm import LanguageModel, LMConfig

VOCAB, M, B, T = 16, 8, 8, 12
# Small settings of each block at width 8 (the defaults are sized for d_model >= 256).
SMALL = {
    "linear_attention": {"num_heads": 2},
    "retnet": {"num_heads": 2},
    "gla": {"num_heads": 2, "gate_low_rank_dim": 4},
    "hgrn2": {"expand_ratio": 4},
    "mamba": {"d_state": 4},
    "mamba2": {"headdim": 4, "d_state": 4},
    "rwkv4": {},
    "rwkv6": {"head_size": 4, "mix_lora_rank": 2, "decay_lora_rank": 2},
    "lru": {"state_dim": 4},
    "s5": {"state_dim": 4},
}


def test_every_block_has_small_settings():
    assert set(SMALL) == set(catalogue.BLOCKS)


def _model(name):
    config = LMConfig(
        vocab_size=VOCAB, d_model=M, num_layers=2, mixer=name,
        mixer_options=tuple(SMALL[name].items()),
    )  # fmt: skip
    return LanguageModel(config, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("name", list(catalogue.BLOCKS))
def test_trains_under_jit_on_8_devices(name):
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices (tests/conftest.py sets 8 fake CPU devices)")
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    model = _model(name)
    optimizer = nnx.Optimizer(model, optax.adam(3e-2), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    tokens = jax.device_put(
        jnp.asarray(rng.integers(0, VOCAB, (B, T + 1))), NamedSharding(mesh, P("data"))
    )

    @nnx.jit
    def step(model, optimizer, tokens):
        def loss_fn(model):
            logits = model(tokens[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer, tokens)) for _ in range(8)]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0], f"{name} does not learn one fixed batch: {losses}"


@pytest.mark.parametrize("name", list(catalogue.BLOCKS))
def test_cached_decoding_equals_the_parallel_model(name):
    model = _model(name)
    for _, node in nnx.iter_graph(model):  # move every parameter off its (often zero) init
        if isinstance(node, nnx.Param):
            noise = 0.2 * jax.random.normal(jax.random.key(1), node[...].shape)
            node[...] = node[...] + noise.astype(node[...].dtype)
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, VOCAB, (2, T)))
    parallel = model(tokens)
    step = nnx.jit(lambda m, tok, cache: m.step(tok, cache))
    cache, outs = model.init_cache(2), []
    for t in range(T):
        logits, cache = step(model, tokens[:, t], cache)
        outs.append(logits)
    np.testing.assert_allclose(np.stack(outs, 1), np.asarray(parallel), rtol=2e-4, atol=2e-4)
