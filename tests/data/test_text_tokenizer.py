"""Tokenizers: lossless round trips, byte counts per token, the BPE cache."""

import numpy as np
import pytest

from lcsm_jax.data.text import tokenizer as T
from tests.data.text_helpers import paragraph

SAMPLES = [
    "In the beginning God created the heaven and the earth.",
    "  leading and trailing spaces  \n\n\tand tabs",
    "Ünïcödé: ✓ 日本語 🙂 — mixed",
    "",
]


@pytest.fixture(scope="module")
def bpe():
    rng = np.random.default_rng(0)
    return T.train_bpe([paragraph(rng, 30) for _ in range(200)], vocab_size=300)


@pytest.mark.parametrize("text", SAMPLES)
def test_byte_tokenizer_round_trips(text):
    tok = T.ByteTokenizer()
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.decode(np.append(ids, tok.eos_id)) == text  # end-of-text decodes to nothing


@pytest.mark.parametrize("text", SAMPLES)
def test_bpe_round_trips_and_counts_bytes(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert int(bpe.token_bytes(300)[ids].sum()) == len(text.encode("utf-8"))


def test_bpe_learns_merges_and_reserves_eos(bpe):
    assert bpe.vocab_size == 300
    assert bpe.eos_id == 0
    text = "the lord shall be with thee"
    assert len(bpe.encode(text)) < len(text)  # frequent words became single tokens
    assert bpe.token_bytes(300)[bpe.eos_id] == 1


def test_bpe_is_cached_next_to_the_data(tmp_path):
    calls = []

    def texts():
        calls.append(1)
        return ["alpha beta gamma " * 20, "delta epsilon " * 30]

    first = T.load_or_train("bpe", 280, tmp_path, texts)
    again = T.load_or_train("bpe", 280, tmp_path, texts)
    assert calls == [1] and (tmp_path / "bpe_280.json").is_file()
    np.testing.assert_array_equal(first.encode("beta delta"), again.encode("beta delta"))


def test_bad_tokenizer_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer 'words'"):
        T.load_or_train("words", 300, tmp_path, list)
    with pytest.raises(ValueError, match="vocab_size >= 257"):
        T.train_bpe(["abc"], 100)
