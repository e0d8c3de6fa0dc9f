"""The LM launchers end to end: train.py, eval.py and generate.py on a tiny local corpus."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.text_helpers import write_corpus

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_eval_generate(tmp_path):
    write_corpus(tmp_path / "corpus.txt", num_paragraphs=60)
    config = (
        f"--config={ROOT}/configs/lm.py:d_model=16,layers=1,heads=2,seq_len=16,batch=8,steps=4,"
        f"tokenizer=bytes,source={tmp_path / 'corpus.txt'},data_dir={tmp_path / 'tfds'}"
    )
    common = [config, "--config.optim.warmup_steps=0", f"--workdir={tmp_path / 'run'}"]

    def run(script, *extra):
        out = subprocess.run(
            [sys.executable, str(ROOT / script), *common, *extra],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    assert "validation_bits_per_byte" in run("train.py")
    printed = run("eval.py")
    result = json.loads((tmp_path / "run" / "eval_4.json").read_text())["metrics"]
    assert set(result) == {
        f"{split}_{name}"
        for split in ("validation", "test")
        for name in ("loss", "perplexity", "bits_per_byte")
    }
    assert f"test_bits_per_byte: {result['test_bits_per_byte']:.4f}" in printed
    text = run("generate.py", "--prompt=The lord", "--num_tokens=12", "--num_samples=2")
    assert text.count("--- sample") == 2 and "tokens/s" in text
