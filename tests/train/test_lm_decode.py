"""Recurrent decoding: greedy generation equals argmax over the parallel forward; sampling rules."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.models.decode import Decoder, SamplingConfig, sample
from lcsm_jax.models.lm import LanguageModel, LMConfig
from lcsm_jax.nn.params import ModelParams

VOCAB = 48
MODELS = {
    "gla": dict(mixer="gla_core", mixer_options=(("num_heads", 2), ("expand_dim", 8))),
    "retnet": dict(mixer="retnet_core", mixer_options=(("num_heads", 2), ("expand_dim", 8))),
    "lcsm_dd_conv": dict(
        mixer="lcsm",
        mixer_options=(("e_type", 1), ("expand_dim", 8), ("o_type", 3), ("s_type", 1)),
        short_conv=3,
    ),
}


def tiny(name):
    config = LMConfig(
        vocab_size=VOCAB, d_model=16, num_layers=2, channel_mixer="glu", **MODELS[name]
    )
    params = ModelParams(lambda: LanguageModel(config, rngs=nnx.Rngs(0)))
    p = params.init()
    # Larger embeddings than the N(0, 0.02²) init: well separated logits, so argmax ties
    # cannot hide a decoding error.
    p["embed"]["embedding"] = p["embed"]["embedding"] * 50
    return params, p


@pytest.mark.parametrize("name", sorted(MODELS))
def test_greedy_decoding_is_argmax_of_parallel_forward(name):
    params, p = tiny(name)
    prompt = jax.random.randint(jax.random.key(1), (2, 5), 0, VOCAB)
    decoder = Decoder(params, SamplingConfig(temperature=0.0), num_tokens=9)
    prefill_logits, cache = decoder.prefill(p, prompt)
    tokens, _, _ = decoder.decode(p, prefill_logits, cache, jax.random.key(0))
    chex.assert_shape(tokens, (2, 9))
    full = jnp.concatenate([prompt, tokens], axis=1)
    logits = params.model(p)(full)
    chex.assert_trees_all_close(prefill_logits, logits[:, 4], atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(np.asarray(tokens), np.asarray(jnp.argmax(logits[:, 4:-1], -1)))
    top2 = jax.lax.top_k(logits[:, 4:-1], 2)[0]
    assert float(jnp.min(top2[..., 0] - top2[..., 1])) > 1e-3  # the check above can fail


def test_top_k_samples_stay_in_the_top_k():
    logits = jax.random.normal(jax.random.key(0), (4, 30))
    allowed = np.asarray(jax.lax.top_k(logits, 3)[1])
    draws = jax.vmap(lambda k: sample(logits, k, SamplingConfig(1.0, 3)))(
        jax.random.split(jax.random.key(1), 200)
    )
    draws = np.asarray(draws)
    for b in range(4):
        assert set(draws[:, b]) == set(allowed[b])  # all of the top 3 appear, nothing else


def test_top_1_and_temperature_0_are_greedy():
    logits = jax.random.normal(jax.random.key(2), (3, 10))
    greedy = jnp.argmax(logits, -1)
    for config in (SamplingConfig(0.0, 0), SamplingConfig(2.0, 1)):
        chex.assert_trees_all_equal(sample(logits, jax.random.key(3), config), greedy)


def test_bad_sampling_arguments_raise():
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        SamplingConfig(top_k=-2)
    params, _ = tiny("gla")
    with pytest.raises(ValueError, match="num_tokens"):
        Decoder(params, SamplingConfig(), num_tokens=0)


def test_decoding_state_does_not_grow_with_the_context():
    params, p = tiny("gla")
    decoder = Decoder(params, SamplingConfig(temperature=0.0), num_tokens=2)
    shapes = [
        jax.tree.map(lambda x: (x.shape, x.dtype), decoder.prefill(p, jnp.zeros((1, n), int))[1])
        for n in (3, 40)
    ]
    assert shapes[0] == shapes[1]  # same state, so the same decode program at any context
