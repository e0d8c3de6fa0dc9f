"""The sequence classifier around the LRC mixer (LrcSSM's network): modes agree, padding is
invisible, gradients flow, bad configs fail."""

import chex
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from lcsm_jax.models.classifier import ClassifierConfig, SequenceClassifier
from lcsm_jax.nn.norm import layer_norm
from lcsm_jax.nn.params import ModelParams

B, T, C, K = 2, 24, 3, 4


def config(hidden=8, num_blocks=2, **options):
    options = {"state": 6} | options
    return ClassifierConfig(
        hidden=hidden, num_blocks=num_blocks, mixer="lrcssm", mixer_options=tuple(options.items())
    )


def build(num_classes=K, **kwargs):
    c = config(**kwargs)
    params = ModelParams(
        lambda: SequenceClassifier(c, num_inputs=C, num_classes=num_classes, rngs=nnx.Rngs(0))
    )
    return params, jax.jit(params.init)()  # one compilation instead of many eager ops


def inputs(seed: int = 0):
    u = jax.random.normal(jax.random.key(seed), (B, T, C))
    mask = jnp.arange(T)[None, :] < jnp.array([T, 9])[:, None]
    return u, mask


@pytest.mark.parametrize("complex_state", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_newton_equals_sequential_network(complex_state):
    newton, p = build(mode="newton", complex_state=complex_state)
    sequential, p_seq = build(mode="sequential", complex_state=complex_state)
    chex.assert_trees_all_equal(p, p_seq)  # same parameters, only the solve differs
    u, mask = inputs()
    logits, stats = jax.jit(lambda p, u, m: newton.model(p)(u, m))(p, u, mask)
    expected, none = jax.jit(lambda p, u, m: sequential.model(p)(u, m))(p, u, mask)
    iterations, none = stats["newton_iterations"], none["newton_iterations"]
    chex.assert_shape(logits, (B, K))
    chex.assert_trees_all_close(logits, expected, atol=1e-4, rtol=0)
    assert int(iterations) >= 1 and int(none) == 0


def test_padding_after_a_series_does_not_change_its_logits():
    model, p = build(mode="input")
    u, mask = inputs(1)
    forward = jax.jit(lambda p, u, m: model.model(p)(u, m)[0])
    logits = forward(p, u, mask)
    # Garbage in the padded steps of series 1, and a shorter array for series 1 alone.
    noisy = u.at[1, 9:].set(100.0)
    chex.assert_trees_all_close(forward(p, noisy, mask)[1], logits[1], atol=1e-6, rtol=0)
    alone = forward(p, u[1:, :9], mask[1:, :9])
    chex.assert_trees_all_close(alone[0], logits[1], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_gradients_reach_every_parameter():
    model, p = build(mode="newton", complex_state=True)
    u, mask = inputs(2)
    labels = jnp.array([0, 3])

    def loss(p):
        logits, _ = model.model(p)(u, mask)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

    grads = jax.jit(jax.grad(loss))(p)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(g))), path
        assert float(jnp.max(jnp.abs(g))) > 0, path


def test_layer_norm_is_parameter_free_and_normalises():
    x = jax.random.normal(jax.random.key(3), (2, 5, 16)) * 4 + 2
    y = layer_norm(x)
    chex.assert_trees_all_close(jnp.mean(y, -1), jnp.zeros((2, 5)), atol=1e-5)
    chex.assert_trees_all_close(jnp.std(y, -1), jnp.ones((2, 5)), atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden": 0}, "hidden"),
        ({"num_classes": 1}, "num_classes"),
        ({"mode": "scan"}, "mode"),
        ({"mode": "input", "complex_state": True}, "complex_state"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


def test_bad_inputs():
    model, p = build(mode="input")
    u, mask = inputs()
    with pytest.raises(ValueError, match="inputs must be"):
        model.model(p)(u[..., :2], mask)
    with pytest.raises(ValueError, match="mask must be"):
        model.model(p)(u, mask[:, :5])
