"""Opening a corpus: local text (prepared on first use) or a standard corpus by name.

Standard corpora are read from a tfds `data_dir` where the user prepared them beforehand (they
cannot be downloaded here), with `tfds.data_source`: random access to `array_record` files,
no TensorFlow. The table maps each name to its tfds dataset, text feature and our three splits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow_datasets as tfds

from lcsm_jax.data.text import builder, sources

STANDARD_SPLITS = {"train": "train", "validation": "validation", "test": "test"}


@dataclasses.dataclass(frozen=True)
class Standard:
    tfds_name: str
    text_key: str
    splits: dict


CORPORA = {
    "wikitext-103": Standard("wikitext103", "text", STANDARD_SPLITS),
    "pg19": Standard("pg19", "book_text", STANDARD_SPLITS),
    # lm1b has no validation split: its held-out set is halved into validation and test.
    "lm1b": Standard(
        "lm1b", "text", {"train": "train", "validation": "test[:50%]", "test": "test[50%:]"}
    ),
}
LOCAL = "local"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Random-access sources per split, the feature holding the text, and a cache folder."""

    splits: dict  # split name -> sequence of examples (dicts)
    text_key: str
    cache_dir: Path


def text_of(example, key: str) -> str:
    value = example[key]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def names() -> list[str]:
    return [LOCAL, *CORPORA]


def open_corpus(
    name: str, data_dir, *, source: str = sources.DEFAULT_SOURCE, validation=0.05, test=0.05
) -> Corpus:
    """The corpus `name` ("local" reads `source`; else a key of `CORPORA`) in `data_dir`.

    Raises:
      FileNotFoundError: `data_dir`, the prepared corpus or the local source does not exist
        (the message names the path).
      ValueError: an unknown corpus name (the message lists the valid ones).
    """
    tfds.disable_progress_bar()  # per-split bars would interleave with the trainer's
    data_dir = Path(data_dir).expanduser()
    if name == LOCAL:
        b = builder.prepare_local(source, data_dir, validation=validation, test=test)
        splits = {split: b.as_data_source(split=split) for split in sources.SPLITS}
        return Corpus(splits, "text", Path(b.data_dir))
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; valid: {', '.join(names())}")
    entry = CORPORA[name]
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"data_dir {data_dir} does not exist; prepare {name!r} there first, e.g. "
            f"tfds.builder({entry.tfds_name!r}, data_dir=..., file_format='array_record')"
            ".download_and_prepare()"
        )
    dataset_dir = data_dir / entry.tfds_name
    if not dataset_dir.is_dir():
        raise FileNotFoundError(
            f"corpus {name!r} is not prepared in {data_dir}: {dataset_dir} does not exist"
        )
    splits = {
        ours: tfds.data_source(
            entry.tfds_name, split=theirs, data_dir=str(data_dir), download=False
        )
        for ours, theirs in entry.splits.items()
    }
    return Corpus(splits, entry.text_key, dataset_dir)
