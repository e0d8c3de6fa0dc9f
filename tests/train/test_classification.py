"""UEA classification through the one training loop: LrcSSM and any other catalogue mixer train,
resume exactly after SIGKILL, refuse another config, and eval.py reports on the workdir."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lcsm_jax.train import experiment, loop
from lcsm_jax.train.checkpoint import CheckpointError
from tests.train.helpers import ENV, kill_resume_and_compare

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "configs"))

import uea as uea_config  # noqa: E402  (configs/uea.py)

pytest.importorskip("aeon")
TINY = "hidden=8,blocks=1,max_length=24"


def config(extra: str):
    c = uea_config.get_config(f"{TINY},{extra}")
    c.train.log_every, c.train.eval_every = 1, 1000
    return c


def _losses(workdir) -> list[float]:
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["split"] == "train"]


def test_lrcssm_trains_resumes_and_refuses_another_config(tmp_path):
    c = config("mode=input,state=8,steps=3")
    assert c.train.batch_size == 8 and c.data.name == "BasicMotions"
    first = loop.train(c, tmp_path)
    assert first["final_step"] == 3 and 0.0 <= first["test"]["BasicMotions"] <= 1.0
    records = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3]
    again = loop.train(config("mode=input,state=8,steps=3"), tmp_path)
    assert again["start_step"] == 3 and again["test"] == first["test"]
    with pytest.raises(CheckpointError, match="different"):
        loop.train(config("mode=input,state=8,steps=5"), tmp_path)


@pytest.mark.parametrize("model", ["lru_core", "gla_core", "lrcssm"])
def test_any_catalogue_mixer_trains_on_uea(tmp_path, model):
    summary = loop.train(config(f"model={model},steps=2"), tmp_path)
    assert summary["final_step"] == 2
    assert 0.0 <= summary["test"]["BasicMotions"] <= 1.0
    assert all(np.isfinite(_losses(tmp_path)))
    if model == "lrcssm":  # the Newton solve reports its iterations
        assert summary["test"]["newton_iterations"] >= 1


def test_lrcssm_options_are_refused_for_another_mixer():
    with pytest.raises(ValueError, match="'lru_core' does not take 'mode'"):
        experiment.translate(uea_config.get_config("model=lru_core,mode=input"))


def test_bad_batch_sizes_raise(tmp_path):
    with pytest.raises(ValueError, match="devices"):
        loop.train(uea_config.get_config("batch=4,mode=input"), tmp_path / "a")
    with pytest.raises(ValueError, match="exceeds"):
        loop.train(uea_config.get_config("batch=48,mode=input"), tmp_path / "b")


def _command(script, workdir, *extra):
    return [
        sys.executable,
        str(ROOT / script),
        f"--config={ROOT}/configs/uea.py:{TINY},steps=30",  # LrcSSM, Newton solve
        "--config.train.save_every=5",
        f"--workdir={workdir}",
        *extra,
    ]


@pytest.mark.slow  # 60 s; the MQAR SIGKILL test runs by default
def test_sigkill_then_restart_reaches_the_same_parameters_and_eval_reports(tmp_path):
    kill_resume_and_compare(lambda workdir: _command("train.py", workdir), tmp_path, steps=30)
    command = _command("eval.py", tmp_path / "killed")
    printed = subprocess.run(command, check=True, env=ENV, capture_output=True, text=True).stdout
    result = json.loads((tmp_path / "killed" / "eval_30.json").read_text())
    assert result["task"] == "uea" and result["step"] == 30
    assert set(result["metrics"]) == {"BasicMotions", "newton_iterations", "train_accuracy"}
    assert f"step 30 BasicMotions: {result['metrics']['BasicMotions']:.4f}" in printed


def test_sweep_py_runs_a_uea_sweep(tmp_path):
    command = [
        sys.executable,
        str(ROOT / "sweep.py"),
        f"--config={ROOT}/configs/uea.py:blocks=1,max_length=24,steps=2",
        f"--sweepdir={tmp_path}",
        "--models=lru",
        "--d_models=8",
        "--lrs=1e-3",
    ]
    out = subprocess.run(command, check=True, env=ENV, capture_output=True, text=True).stdout
    assert "Best BasicMotions over learning rates." in out and "| lru | 8 |" in out
    assert (tmp_path / "lru_d8_lr0.001" / "summary.json").exists()
