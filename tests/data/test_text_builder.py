"""Prepared text datasets: round trip, deterministic split, standard corpora, clear errors."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lcsm_jax.data.text import builder, corpora, sources
from tests.data.text_helpers import write_corpus


def reassemble(corpus) -> list[str]:
    docs = {}
    for split, source in corpus.splits.items():
        for i in range(len(source)):
            example = source[i]
            docs[int(example["index"])] = (split, corpora.text_of(example, corpus.text_key))
    return [docs[i] for i in sorted(docs)]


def test_prepared_file_round_trips_the_text(tmp_path):
    text = write_corpus(tmp_path / "corpus.txt", num_paragraphs=80)
    corpus = corpora.open_corpus("local", tmp_path / "tfds", source=str(tmp_path / "corpus.txt"))
    docs = reassemble(corpus)
    assert sources.PARAGRAPH.join(t for _, t in docs) == text
    splits = [s for s, _ in docs]
    assert {s: splits.count(s) > 0 for s in sources.SPLITS} == dict.fromkeys(sources.SPLITS, True)
    assert splits == [sources.split_of(i, 0.05, 0.05) for i in range(len(docs))]
    assert (corpus.cache_dir / "dataset_info.json").is_file()


def test_prepared_folder_round_trips_every_file_in_order(tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    texts = [write_corpus(folder / "b.txt", 30, seed=1), write_corpus(folder / "sub/c.txt", 30, 2)]
    texts.insert(0, write_corpus(folder / "a.md", 30, seed=3))
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    corpus = corpora.open_corpus("local", tmp_path / "tfds", source=str(folder))
    docs = [t for _, t in reassemble(corpus)]
    expected = [p for t in texts for p in sources.paragraphs(t)]
    assert docs == expected


def test_split_is_deterministic_and_near_the_fractions():
    splits = [sources.split_of(i, 0.1, 0.2) for i in range(20_000)]
    assert splits == [sources.split_of(i, 0.1, 0.2) for i in range(20_000)]
    assert abs(splits.count("validation") / 20_000 - 0.1) < 0.01
    assert abs(splits.count("test") / 20_000 - 0.2) < 0.01


def test_kjv_is_embedded():
    chapters = sources.kjv_chapters()
    assert len(chapters) == 1189
    assert chapters[0].startswith("In the beginning God created the heaven and the earth.")
    assert 4_000_000 < sum(map(len, chapters)) < 4_600_000


def test_prepared_copy_is_reused(tmp_path):
    write_corpus(tmp_path / "corpus.txt")
    b1 = builder.prepare_local(str(tmp_path / "corpus.txt"), tmp_path / "tfds")
    info = Path(str(b1.data_path)) / "dataset_info.json"
    stamp = info.stat().st_mtime_ns
    b2 = builder.prepare_local(str(tmp_path / "corpus.txt"), tmp_path / "tfds")
    assert str(b2.data_path) == str(b1.data_path)
    assert info.stat().st_mtime_ns == stamp
    write_corpus(tmp_path / "corpus.txt", num_paragraphs=70)  # an edited source: a new copy
    b3 = builder.prepare_local(str(tmp_path / "corpus.txt"), tmp_path / "tfds")
    assert str(b3.data_path) != str(b1.data_path)


@pytest.mark.parametrize("name", sorted(corpora.CORPORA))
def test_standard_corpora_read_by_name(tmp_path, name):
    entry = corpora.CORPORA[name]
    (tmp_path / entry.tfds_name).mkdir()
    with tfds.testing.mock_data(num_examples=5):
        corpus = corpora.open_corpus(name, tmp_path)
        assert set(corpus.splits) == set(sources.SPLITS)
        for source in corpus.splits.values():
            assert len(source) > 0
            assert isinstance(corpora.text_of(source[0], corpus.text_key), str)


def test_missing_data_dir_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        corpora.open_corpus("pg19", missing)


def test_unprepared_corpus_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "lm1b")):
        corpora.open_corpus("lm1b", tmp_path)


def test_missing_local_source_names_the_path(tmp_path):
    missing = tmp_path / "absent.txt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        corpora.open_corpus("local", tmp_path, source=str(missing))


def test_folder_without_text_files_names_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "empty")):
        corpora.open_corpus("local", tmp_path / "tfds", source=str(tmp_path / "empty"))


def test_bad_names_and_fractions_raise(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus 'wikitext2'.*wikitext-103"):
        corpora.open_corpus("wikitext2", tmp_path)
    with pytest.raises(ValueError, match="fractions"):
        builder.prepare_local("kjv", tmp_path, validation=0.6, test=0.5)


def test_too_small_source_raises(tmp_path):
    (tmp_path / "one.txt").write_text("just one paragraph")
    with pytest.raises(ValueError, match="too few documents"):
        builder.prepare_local(str(tmp_path / "one.txt"), tmp_path / "tfds")


def test_wikitext_articles_split_at_titles(tmp_path):
    lines = [" = Alpha = \n", " \n", " text a \n", " = = Sub = = \n", " more \n", " = Beta = \n"]
    (tmp_path / "wiki.train.raw").write_text("".join(lines) + " text b \n")
    b = builder.Wikitext103(data_dir=str(tmp_path / "tfds"))
    articles = [ex["text"] for _, ex in b._generate_examples(tmp_path / "wiki.train.raw")]
    assert articles == ["".join(lines[:5]), " = Beta = \n text b \n"]
    assert np.all([a.startswith(" = ") for a in articles])
