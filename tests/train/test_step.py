"""The pure train step: gradient accumulation, bf16 compute, the NaN/Inf guard, the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lcsm_jax.train import loop, optim, sharding
from lcsm_jax.train.step import StepConfig, make_train_step
from lcsm_jax.train.tasks.tokens import cross_entropy
from tests.train.helpers import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = tiny_config()
    config.mesh.num_devices = 1
    return loop.Run(config, tmp_path_factory.mktemp("step"))


def _step(run, **kwargs):
    config = StepConfig(**kwargs)
    return make_train_step(run.task.loss, run.params, run.tx, config, run.mesh, run.state_shardings)


def _batch(run, step=0):
    return sharding.put_batch(run.data.train_batch(step), run.mesh)


def test_gradient_accumulation_equals_one_big_batch(run):
    # Plain SGD with lr 1 turns the parameter change into the gradient itself (Adam's first step
    # would amplify rounding in near-zero gradients into sign flips).
    tx = optax.sgd(1.0)

    def state():
        params = run.init_state()["params"]
        return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

    shardings = {
        **run.state_shardings,
        "opt_state": sharding.tree_shardings(
            jax.eval_shape(tx.init, run.params.abstract), run.mesh
        ),
    }
    outputs = []
    for accum in (1, 4):
        config = StepConfig(grad_accum=accum)
        step = make_train_step(run.task.loss, run.params, tx, config, run.mesh, shardings)
        start = state()
        before = jax.tree.map(np.asarray, start["params"])
        new, metrics = step(start, _batch(run))
        outputs.append(
            (metrics["loss"], jax.tree.map(lambda a, b: b - np.asarray(a), new["params"], before))
        )
    np.testing.assert_allclose(outputs[1][0], outputs[0][0], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-7),
        outputs[1][1],
        outputs[0][1],
    )


def test_bfloat16_compute_keeps_float32_params(run):
    state, metrics = _step(run, compute_dtype="bfloat16")(run.init_state(), _batch(run))
    assert bool(metrics["finite"])
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state["params"]))
    ref = _step(run)(run.init_state(), _batch(run))[1]["loss"]
    np.testing.assert_allclose(metrics["loss"], ref, rtol=2e-2)


def test_non_finite_step_leaves_the_state_unchanged(run):
    batch = run.data.train_batch(0)
    batch["labels"][:] = np.where(batch["labels"] >= 0, 10**6, batch["labels"])  # out of vocab
    before = run.init_state()
    expected = jax.tree.map(np.asarray, before)
    after, metrics = _step(run)(before, sharding.put_batch(batch, run.mesh))
    assert not bool(metrics["finite"])
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, after), expected)


def test_cross_entropy_ignores_unlabelled_positions():
    logits = jnp.log(jnp.array([[[0.25, 0.75], [0.5, 0.5]]]))
    loss, sums = cross_entropy(logits, jnp.array([[1, -100]]))
    np.testing.assert_allclose(loss, -np.log(0.75), rtol=1e-6)
    assert int(sums["count"]) == 1 and int(sums["correct"]) == 1


def test_invalid_step_and_optim_configs_raise():
    with pytest.raises(ValueError, match="compute_dtype"):
        StepConfig(compute_dtype="float16")
    with pytest.raises(ValueError, match="grad_accum"):
        StepConfig(grad_accum=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.OptimConfig(warmup_steps=10, total_steps=5)
