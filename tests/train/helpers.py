"""Tiny MQAR configs and the SIGKILL-resume harness of the training tests."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from lcsm_jax.train.checkpoint import Checkpointer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "configs"))

import mqar  # noqa: E402  (configs/mqar.py)

TINY = "model=gla_core,d_model=32,vocab=128,seq_len=32,num_kv=2,batch=16,steps=12"


def tiny_config(extra: str = ""):
    config = mqar.get_config(TINY + ("," + extra if extra else ""))
    config.data.num_train = 512
    config.data.num_test = 32
    config.train.eval_every = 1000
    config.train.log_every = 1
    config.optim.warmup_steps = 0
    return config


def losses(workdir) -> list[float]:
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["split"] == "train"]


# The launchers run in fresh processes on one CPU device.
ENV = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}


def final_params(workdir):
    ckpt = Checkpointer(Path(workdir) / "checkpoints", create=False)
    step = ckpt.latest_step()
    restored = ckpt.manager.restore(step)
    ckpt.close()
    return step, restored["state"]["params"]


def kill_resume_and_compare(command, tmp_path, steps: int, kill_after: int = 10):
    """Runs `command(workdir)` straight through; runs it again, SIGKILLs it once checkpoint
    `kill_after` exists and restarts it; asserts both end at `steps` with identical parameters.
    Returns the straight run's completed process (stdout, stderr as text)."""
    straight = subprocess.run(
        command(tmp_path / "straight"), check=True, env=ENV, capture_output=True, text=True
    )
    proc = subprocess.Popen(
        command(tmp_path / "killed"), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while not (ckpts / str(kill_after)).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) < steps
    subprocess.run(command(tmp_path / "killed"), check=True, env=ENV, capture_output=True)
    step_a, params_a = final_params(tmp_path / "straight")
    step_b, params_b = final_params(tmp_path / "killed")
    assert step_a == step_b == steps
    jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
    return straight
