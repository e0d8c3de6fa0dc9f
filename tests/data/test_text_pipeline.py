"""Packing and the grain pipelines: no token lost, exact resume, evaluation covers the split."""

import json

import grain
import numpy as np
import pytest

from lcsm_jax.data.text import corpora, pipeline
from lcsm_jax.data.text.packing import IGNORE, PackIterDataset
from lcsm_jax.data.text.task import LMData, LMTask
from lcsm_jax.data.text.tokenizer import ByteTokenizer
from tests.data.text_helpers import write_corpus


def documents(seed=0, n=23):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 50, int(rng.integers(1, 40))).astype(np.int32) for _ in range(n)]


def pack(docs, seq_len):
    return PackIterDataset(grain.MapDataset.source(docs).to_iter_dataset(), seq_len)


@pytest.mark.parametrize("seq_len", [1, 7, 16, 200])
def test_packing_loses_no_token(seq_len):
    docs = documents()
    stream = np.concatenate(docs)
    windows = list(pack(docs, seq_len))
    labels = np.concatenate([w["labels"] for w in windows])
    inputs = np.concatenate([w["inputs"] for w in windows])
    kept = labels != IGNORE
    np.testing.assert_array_equal(labels[kept], stream[1:])  # every token predicted once
    np.testing.assert_array_equal(inputs[kept], stream[:-1])  # from the token before it
    assert all(w["inputs"].shape == (seq_len,) for w in windows)
    assert np.all(labels[np.argmin(kept) :] == IGNORE) or kept.all()  # padding only at the end


def test_pack_state_restores_mid_document():
    it = iter(pack(documents(1), 5))
    for _ in range(7):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    rest = [w["labels"] for w in it]
    it2 = iter(pack(documents(1), 5))
    it2.set_state(state)
    np.testing.assert_array_equal(np.stack([w["labels"] for w in it2]), np.stack(rest))


def test_bad_seq_len_raises():
    with pytest.raises(ValueError, match="seq_len"):
        pack(documents(), 0)


@pytest.fixture(scope="module")
def text_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    write_corpus(root / "corpus.txt", num_paragraphs=80)
    return LMTask(
        source=str(root / "corpus.txt"), data_dir=str(root / "tfds"), tokenizer="bytes", seq_len=32
    )


def test_resumed_iterator_gives_the_same_batches(text_task):
    data = LMData(text_task, batch_size=4)
    first = [data.train_batch(step) for step in range(5)]
    state = json.loads(json.dumps(data.get_state()))  # what the checkpoint stores
    later = [data.train_batch(step) for step in range(5, 40)]  # past one epoch: reshuffled
    resumed = LMData(text_task, batch_size=4)
    resumed.set_state(state)
    again = [resumed.train_batch(step) for step in range(5, 40)]
    for a, b in zip(later, again, strict=True):
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    fresh = LMData(text_task, batch_size=4)
    np.testing.assert_array_equal(fresh.train_batch(0)["inputs"], first[0]["inputs"])
    assert not np.array_equal(first[0]["inputs"], first[1]["inputs"])
    assert first[0]["inputs"].shape == (4, 32) and first[0]["inputs"].dtype == np.int32
    with pytest.raises(ValueError, match="asked for step 3"):
        resumed.train_batch(3)


def test_train_epochs_cover_every_document_in_new_orders(text_task):
    data = LMData(text_task, batch_size=2)
    source = data.corpus.splits["train"]
    texts = [corpora.text_of(source[i], "text") for i in range(len(source))]
    tokens = sum(len(t.encode("utf-8")) + 1 for t in texts)
    assert data.steps_per_epoch == tokens // (2 * 32)

    def epoch_documents():
        labels = [
            data.train_batch(data.get_state()["step"])["labels"]
            for _ in range(data.steps_per_epoch)
        ]
        stream = np.concatenate([b.ravel() for b in labels])
        pieces = np.split(stream, np.flatnonzero(stream == 256) + 1)
        return [ByteTokenizer().decode(p) for p in pieces[1:-1]]  # complete documents only

    first, second = epoch_documents(), epoch_documents()
    assert len(set(first)) == len(first) >= len(texts) - 2  # each document once
    assert set(first) <= set(texts) and set(second) <= set(texts)
    assert first[:10] != second[:10]  # reshuffled


def test_eval_windows_cover_the_split_once(text_task):
    data = LMData(text_task, batch_size=4)
    source = data.corpus.splits["validation"]
    stream = np.concatenate(
        [
            np.append(ByteTokenizer().encode(corpora.text_of(source[i], "text")), 256)
            for i in range(len(source))
        ]
    )
    inputs, labels = data.eval_windows("validation")
    assert inputs.shape[1] == 32
    np.testing.assert_array_equal(labels[labels != IGNORE], stream[1:])
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        data.eval_windows("dev")


def test_token_count_is_exact_or_extrapolated():
    docs = [{"text": "ab" * n} for n in (1, 2, 3, 4)]
    assert pipeline.count_tokens(docs, "text", ByteTokenizer()) == 2 + 4 + 6 + 8 + 4
    # 5 characters are reached after two documents (3 + 5 tokens): scaled to four documents.
    estimate = pipeline.count_tokens(docs, "text", ByteTokenizer(), max_chars=5)
    assert estimate == round((3 + 5) * 4 / 2)
