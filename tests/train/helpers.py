"""Tiny MQAR configs for the training tests."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "configs"))

import mqar  # noqa: E402  (configs/mqar.py)

TINY = "model=gla,d_model=32,vocab=128,seq_len=32,num_kv=2,batch=16,steps=12"


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
