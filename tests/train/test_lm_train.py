"""The LM task in the trainer: training, exact resume of the data iterator, bits per byte."""

import json
import math
import shutil
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from lcsm_jax.data.text import corpora
from lcsm_jax.data.text.packing import IGNORE
from lcsm_jax.train import loop
from tests.data.text_helpers import write_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "configs"))

import lm  # noqa: E402  (configs/lm.py)

TINY = "d_model=16,layers=1,heads=2,seq_len=16,batch=8,steps=6,tokenizer=bytes"


def tiny_config(tmp_path, extra=""):
    write_corpus(tmp_path / "corpus.txt", num_paragraphs=60)
    config = lm.get_config(TINY + ("," + extra if extra else ""))
    config.data.source = str(tmp_path / "corpus.txt")
    config.data.data_dir = str(tmp_path / "tfds")
    config.data.eval_max_windows = 8
    config.model.mixer_options.expand_dim = 8
    config.optim.warmup_steps = 0
    config.train.eval_every = 1000
    config.train.save_every = 3
    config.train.log_every = 1
    config.train.keep_checkpoints = 5
    config.train.async_checkpoints = False
    return config


def train_losses(workdir) -> list[tuple[int, float]]:
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["split"] == "train"]


def test_resume_sees_the_same_batches(tmp_path):
    config = tiny_config(tmp_path)
    summary = loop.train(config, tmp_path / "run")
    assert summary["final_step"] == 6
    metrics = summary["test"]
    # Byte tokens: one byte per predicted token, so bits per byte is the loss in bits.
    assert metrics["validation_bits_per_byte"] == pytest.approx(
        metrics["validation_loss"] / math.log(2), rel=1e-6
    )
    assert metrics["validation_perplexity"] == pytest.approx(math.exp(metrics["validation_loss"]))
    first = dict(train_losses(tmp_path / "run"))
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "6")  # as if killed after the step-3 save
    loop.train(config, tmp_path / "run")
    resumed = train_losses(tmp_path / "run")[len(first) :]
    assert [s for s, _ in resumed] == [4, 5, 6]
    np.testing.assert_allclose([loss for _, loss in resumed], [first[s] for s in (4, 5, 6)])


def test_bits_per_byte_counts_the_utf8_bytes_of_the_split(tmp_path):
    config = tiny_config(tmp_path, "tokenizer=bpe,vocab=300")
    config.data.eval_max_windows = 0
    run = loop.Run(config, tmp_path / "run")
    params = run.init_state()["params"]
    metrics = run.evaluator(params, ("validation",))
    source = run.data.corpus.splits["validation"]
    texts = [corpora.text_of(source[i], "text") for i in range(len(source))]
    inputs, labels = run.data.eval_windows("validation")
    logp = jax.nn.log_softmax(np.asarray(run.params.model(params)(inputs)), -1)
    mask = labels != IGNORE
    nll = -np.take_along_axis(np.asarray(logp), np.where(mask, labels, 0)[..., None], -1)[..., 0]
    first_token = run.data.tokenizer.encode(texts[0])[0]
    first_bytes = len(run.data.tokenizer.decode([first_token]).encode("utf-8"))
    num_bytes = sum(len(t.encode("utf-8")) + 1 for t in texts) - first_bytes  # +1: end of text
    expected = float(np.sum(nll * mask)) / math.log(2) / num_bytes
    assert metrics["validation_bits_per_byte"] == pytest.approx(expected, rel=1e-4)
    assert metrics["validation_loss"] == pytest.approx(np.sum(nll * mask) / mask.sum(), rel=1e-4)
    run.checkpoints.close()


def test_missing_corpus_fails_before_training(tmp_path):
    config = tiny_config(tmp_path, "corpus=pg19")
    config.data.data_dir = str(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none")):
        loop.train(config, tmp_path / "run")
