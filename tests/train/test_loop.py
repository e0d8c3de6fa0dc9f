"""The training loop: sharded equals single-device, exact resume after SIGKILL, clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lcsm_jax.train import loop
from lcsm_jax.train.checkpoint import CheckpointError
from tests.train.helpers import ENV, TINY, kill_resume_and_compare, losses, tiny_config

ROOT = Path(__file__).resolve().parents[2]


def test_fsdp_mesh_gives_the_same_losses_and_shards_params(tmp_path):
    single = tiny_config("steps=4")
    single.mesh.num_devices = 1
    sharded = tiny_config("steps=4")
    sharded.mesh.num_devices, sharded.mesh.fsdp = 8, 2
    loop.train(single, tmp_path / "single")
    loop.train(sharded, tmp_path / "sharded")
    np.testing.assert_allclose(losses(tmp_path / "sharded"), losses(tmp_path / "single"), rtol=1e-4)

    run = loop.Run(sharded, tmp_path / "fresh")
    state = run.init_state()
    embedding = state["params"]["embed"]["embedding"]
    assert "fsdp" in embedding.sharding.spec
    assert len(embedding.addressable_shards) == 8
    assert embedding.addressable_shards[0].data.shape[0] * 2 == embedding.shape[0] or (
        embedding.addressable_shards[0].data.shape[1] * 2 == embedding.shape[1]
    )
    mu = state["opt_state"][1][0].mu["embed"]["embedding"]
    assert mu.sharding == embedding.sharding
    run.checkpoints.close()


def _train_command(workdir):
    return [
        sys.executable,
        str(ROOT / "train.py"),
        f"--config={ROOT}/configs/mqar.py:{TINY},steps=40",
        "--config.data.num_train=512",
        "--config.data.num_test=32",
        "--config.train.save_every=5",
        "--config.optim.warmup_steps=0",
        f"--workdir={workdir}",
    ]


def test_sigkill_then_restart_reaches_the_same_parameters(tmp_path):
    straight = kill_resume_and_compare(_train_command, tmp_path, steps=40)
    # stderr is a pipe, not a terminal: a few progress records, not one per step (40 steps).
    assert straight.stderr.replace("\r", "\n").count("it/s") <= 6
    # eval.py reports the same task metrics on the workdir.
    workdir = tmp_path / "killed"
    command = [sys.executable, str(ROOT / "eval.py"), *_train_command(workdir)[2:]]
    printed = subprocess.run(command, check=True, env=ENV, capture_output=True, text=True).stdout
    result = json.loads((workdir / "eval_40.json").read_text())
    assert result["task"] == "mqar" and set(result["metrics"]) == {"seq32_kv2"}
    assert f"step 40 seq32_kv2: {result['metrics']['seq32_kv2']:.4f}" in printed


def test_unknown_model_and_invalid_mqar_setting_raise(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nope'.*gla"):
        loop.train(tiny_config("model=nope"), tmp_path / "a")
    with pytest.raises(ValueError, match="even seq_len"):
        loop.train(tiny_config("seq_len=31"), tmp_path / "b")


def test_missing_and_corrupt_checkpoints_raise_and_nothing_is_deleted(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        loop.Run(tiny_config(), tmp_path / "missing", create=False)
    workdir = tmp_path / "run"
    loop.train(tiny_config("steps=2"), workdir)
    step_dir = workdir / "checkpoints" / "2"
    for f in (step_dir / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    before = sorted(str(p) for p in (workdir / "checkpoints").rglob("*"))
    with pytest.raises(CheckpointError, match="could not be restored.*left untouched"):
        loop.train(tiny_config("steps=2"), workdir)
    assert sorted(str(p) for p in (workdir / "checkpoints").rglob("*")) == before


def test_resuming_with_another_config_is_refused(tmp_path):
    loop.train(tiny_config("steps=2"), tmp_path)
    with pytest.raises(CheckpointError, match="different config"):
        loop.train(tiny_config("steps=2,lr=0.5"), tmp_path)


def test_a_checkpoint_of_an_earlier_format_is_refused_and_kept(tmp_path):
    loop.train(tiny_config("steps=2"), tmp_path)
    meta_file = tmp_path / "checkpoints" / "2" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    del meta["format"]  # as written before the checkpoint format existed
    meta_file.write_text(json.dumps(meta))
    before = sorted(str(p) for p in (tmp_path / "checkpoints").rglob("*"))
    with pytest.raises(CheckpointError, match="earlier version of lcsm_jax.*format 1"):
        loop.train(tiny_config("steps=2"), tmp_path)
    assert sorted(str(p) for p in (tmp_path / "checkpoints").rglob("*")) == before
