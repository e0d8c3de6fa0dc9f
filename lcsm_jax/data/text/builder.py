"""tensorflow-datasets builders that write `array_record` (random access, no TensorFlow needed).

`LocalText` prepares local text (see `sources`) into train/validation/test; `prepare_local`
builds it once per source under `data_dir/local_text/<name>/` and returns the builder.
`Wikitext103` turns the raw WikiText-103 files a user downloaded (`manual_dir`) into a
standard tfds dataset, so it can be read by name like lm1b and pg19 (see `corpora`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from lcsm_jax.data.text import sources

FILE_FORMAT = "array_record"
FEATURES = {"text": tfds.features.Text(), "index": np.int64}


@dataclasses.dataclass(eq=False)
class LocalTextConfig(tfds.core.BuilderConfig):
    source: str = sources.DEFAULT_SOURCE
    validation: float = 0.05
    test: float = 0.05


class LocalText(tfds.core.GeneratorBasedBuilder):
    """Documents of a local text source, with their index in the source (to reassemble it)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Documents with their source index; hashed split."}

    def _info(self):
        return self.dataset_info_from_configs(
            description=f"Local text from {self.builder_config.source}",
            features=tfds.features.FeaturesDict(FEATURES),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        c = self.builder_config
        assigned = {split: [] for split in sources.SPLITS}
        for index, text in enumerate(sources.documents(c.source)):
            assigned[sources.split_of(index, c.validation, c.test)].append((index, text))
        for split, docs in assigned.items():
            if not docs:
                raise ValueError(
                    f"the text source {c.source} has too few documents for a non-empty {split} "
                    f"split ({sum(map(len, assigned.values()))} documents in all)"
                )
        return {split: self._generate_examples(docs) for split, docs in assigned.items()}

    def _generate_examples(self, docs):
        for index, text in docs:
            yield index, {"text": text, "index": index}


def config_name(source: str, validation: float, test: float) -> str:
    """A directory-safe name per (source, its files' state, split fractions)."""
    if source == sources.DEFAULT_SOURCE:
        stem = source
    else:
        stem = re.sub(r"[^a-z0-9]+", "_", Path(source).expanduser().name.lower()).strip("_")
    tag = sources.fingerprint(source) if source != sources.DEFAULT_SOURCE else ""
    fractions = f"v{round(validation * 1000)}t{round(test * 1000)}"
    return "_".join(part for part in (stem or "text", tag, fractions) if part)


def prepare_local(
    source: str, data_dir, *, validation: float = 0.05, test: float = 0.05
) -> LocalText:
    """The prepared builder of `source` in `data_dir` (prepared now if it is not yet)."""
    sources.check_fractions(validation, test)
    if source != sources.DEFAULT_SOURCE and not Path(source).expanduser().exists():
        raise FileNotFoundError(
            f"text source {Path(source).expanduser()} does not exist (give a file, a folder of "
            f"text files, or {sources.DEFAULT_SOURCE!r} for the embedded corpus)"
        )
    config = LocalTextConfig(
        name=config_name(source, validation, test),
        version=LocalText.VERSION,
        source=source,
        validation=validation,
        test=test,
    )
    Path(data_dir).expanduser().mkdir(parents=True, exist_ok=True)
    builder = LocalText(
        config=config, data_dir=str(Path(data_dir).expanduser()), file_format=FILE_FORMAT
    )
    if not builder.is_prepared():
        # Nothing is downloaded; no GCS lookup either (offline machines, clusters without egress).
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    return builder


HEADING = re.compile(r"^ = [^=].* = $")  # a WikiText article title line, e.g. " = Valkyria = "
WIKITEXT_FILES = {
    "train": "wiki.train.raw",
    "validation": "wiki.valid.raw",
    "test": "wiki.test.raw",
}


class Wikitext103(tfds.core.GeneratorBasedBuilder):
    """WikiText-103 (raw), one example per article, from the files in `manual_dir`."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Extract wikitext-103-raw-v1.zip so that manual_dir holds "
        + ", ".join(WIKITEXT_FILES.values())
        + " (directly or in a wikitext-103-raw/ folder)."
    )

    def _info(self):
        return self.dataset_info_from_configs(
            description="WikiText-103 raw (Merity et al., 2016), one example per article",
            features=tfds.features.FeaturesDict(FEATURES),
        )

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        if (root / "wikitext-103-raw").is_dir():
            root = root / "wikitext-103-raw"
        return {
            split: self._generate_examples(root / name) for split, name in WIKITEXT_FILES.items()
        }

    def _generate_examples(self, path):
        if not path.is_file():
            raise FileNotFoundError(f"missing WikiText-103 file {path}")
        articles, lines = [], []
        for line in sources.read_file(path).splitlines(keepends=True):
            if HEADING.match(line.rstrip("\n")) and lines:
                articles.append("".join(lines))
                lines = []
            lines.append(line)
        if lines:
            articles.append("".join(lines))
        for index, text in enumerate(articles):
            yield index, {"text": text, "index": index}
