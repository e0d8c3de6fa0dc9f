"""Training with sequence parallelism: a (data 2, seq 4) mesh gives the losses of one device,
splits the batch's time axis, lowers per-device activation memory, and its checkpoint restores
on another mesh."""

import shutil

import numpy as np
import pytest

from lcsm_jax.train import loop, sharding
from lcsm_jax.train.step import make_train_step
from tests.train.helpers import losses, tiny_config


def _seq_config(seq: int, devices: int, extra: str = "steps=4"):
    config = tiny_config(extra)
    config.mesh.num_devices, config.mesh.seq = devices, seq
    return config


@pytest.mark.parametrize(
    "model", ["gla_core", pytest.param("gated_deltanet", marks=pytest.mark.slow)]
)
def test_data_by_seq_mesh_gives_the_single_device_losses(tmp_path, model):
    single = _seq_config(1, 1, f"steps=4,model={model}")
    split = _seq_config(4, 8, f"steps=4,model={model}")
    loop.train(single, tmp_path / "single")
    loop.train(split, tmp_path / "split")
    np.testing.assert_allclose(losses(tmp_path / "split"), losses(tmp_path / "single"), rtol=1e-4)


@pytest.mark.slow
def test_seq_mesh_checkpoint_continues_on_one_device(tmp_path):
    """The step-4 checkpoint of a run on seq = 4 restores on one device and continues to step
    8; its first step there sees the very parameters the seq = 4 run had (the checkpoint does
    not depend on the mesh), so the two step-5 losses agree to float rounding. (Later steps
    drift apart by float noise amplified by Adam, about 1e-4 per step here, on either mesh.)"""
    split, moved = tmp_path / "split", tmp_path / "moved"
    configs = [_seq_config(4, 8, "steps=8"), _seq_config(1, 1, "steps=8")]
    for config in configs:
        config.train.save_every = 4
    loop.train(configs[0], split)
    shutil.copytree(split / "checkpoints", moved / "checkpoints")
    shutil.rmtree(moved / "checkpoints" / "8")  # as if the seq = 4 run stopped after step 4
    summary = loop.train(configs[1], moved)
    assert summary["start_step"] == 4 and summary["final_step"] == 8
    continued, original = losses(moved), losses(split)
    assert len(continued) == 4 and np.all(np.isfinite(continued))
    np.testing.assert_allclose(continued[0], original[4], rtol=1e-5)


@pytest.mark.slow
def test_batch_time_axis_is_split_and_activation_memory_falls(tmp_path):
    """On (data 1, seq n) meshes each device holds T / n tokens of every sequence, and the train
    step's temporary (activation) memory per device falls with n (XLA's memory analysis)."""
    temp = {}
    for seq in (1, 2, 4):
        config = _seq_config(seq, seq, "steps=4,seq_len=512,vocab=1024")  # data = 1
        run = loop.Run(config, tmp_path / f"s{seq}")
        batch = sharding.put_batch(run.task.train_batch(0), run.mesh)
        tokens = next(iter(batch.values()))
        assert tokens.addressable_shards[0].data.shape[1] == tokens.shape[1] // seq
        step = make_train_step(
            run.task.loss, run.params, run.tx, run.experiment.train.step, run.mesh,
            run.state_shardings,
        )  # fmt: skip
        analysis = step.lower(run.init_state(), batch).compile().memory_analysis()
        temp[seq] = analysis.temp_size_in_bytes
        run.checkpoints.close()
    assert temp[2] < 0.75 * temp[1], temp
    assert temp[4] < 0.75 * temp[2], temp


def test_seq_must_divide_the_devices_and_the_length():
    with pytest.raises(ValueError, match="mesh.seq=3 must be >= 1, with fsdp·seq dividing"):
        sharding.make_mesh(num_devices=8, seq=3)
    mesh = sharding.make_mesh(num_devices=8, seq=4)
    with pytest.raises(ValueError, match="length 30 does not split over mesh.seq=4"):
        sharding.put_batch({"inputs": np.zeros((2, 30), np.int32)}, mesh)


@pytest.mark.slow
def test_lm_on_a_data_by_seq_mesh_gives_the_single_device_losses(tmp_path):
    """Language modelling (packed byte windows, the LCSM skeleton with its short conv) on a
    (data 2, seq 4) mesh: the losses of one device."""
    from tests.train.test_lm_train import tiny_config as lm_config

    single = lm_config(tmp_path, "steps=4")
    single.mesh.num_devices = 1
    split = lm_config(tmp_path, "steps=4")
    split.mesh.num_devices, split.mesh.seq = 8, 4
    loop.train(single, tmp_path / "single")
    loop.train(split, tmp_path / "split")
    np.testing.assert_allclose(losses(tmp_path / "split"), losses(tmp_path / "single"), rtol=1e-4)
