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
from tests.blocks.helpers import decode_and_parallel, perturb
from tests.blocks.small import SMALL

VOCAB, M, B, T = 16, 8, 8, 12


def test_every_block_has_small_settings():
    assert set(SMALL) == set(catalogue.BLOCKS)


def _model(name):
    config = LMConfig(
        vocab_size=VOCAB, d_model=M, num_layers=2, mixer=name,
        mixer_options=tuple(SMALL[name].items()),
    )  # fmt: skip
    return LanguageModel(config, rngs=nnx.Rngs(0))


# The default run trains one block on 8 devices (the sharding is the model's, the same for every
# mixer; each block's jit + grad is in test_contract.py); `-m slow` trains every block.
DEFAULT_TRAINED = ("gla",)


@pytest.mark.parametrize(
    "name",
    [
        n if n in DEFAULT_TRAINED else pytest.param(n, marks=pytest.mark.slow)
        for n in catalogue.BLOCKS
    ],
)
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


DEFAULT_DECODED = ("gla", "mamba2", "rwkv4", "gated_deltanet")


@pytest.mark.parametrize(
    "name",
    [
        n if n in DEFAULT_DECODED else pytest.param(n, marks=pytest.mark.slow)
        for n in catalogue.BLOCKS
    ],
)
def test_cached_decoding_equals_the_parallel_model(name):
    model = perturb(_model(name))  # every parameter off its (often zero) init
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, VOCAB, (2, T)))
    stepped, parallel = decode_and_parallel(model, tokens)
    np.testing.assert_allclose(np.asarray(stepped), np.asarray(parallel), rtol=2e-4, atol=2e-4)
