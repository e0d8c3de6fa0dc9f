"""UEA/UCR time-series classification sets shipped inside the `aeon` package (offline).

`pip install '.[uea]'` installs aeon. Its wheel carries, among others, BasicMotions (multivariate,
6 channels, length 100, 4 classes), JapaneseVowels (12 channels, variable length 7-29, 9 classes)
and the longer univariate OSULeaf (427) and ACSF1 (1460). The original train/test split is kept.

Variable-length series are right-padded with zeros to the longest series of either split, and a
[N, T] mask marks the real steps. The LrcSSM network is causal, so padding after a series cannot
change its states, and the classifier averages logits over the masked steps only: padding has no
effect on the prediction. Channels are standardised with the training split's statistics (over
real steps only).

The long UEA sets of the LrcSSM paper (EigenWorms, EthanolConcentration, Heartbeat,
MotorImagery, SelfRegulationSCP1/2) are not in aeon's wheel. Download the UEA archive
(timeseriesclassification.com, "Multivariate_ts") on a machine with a network and pass its
folder as `data_dir` (`configs/uea.py:dataset=EigenWorms,data_dir=/data/Multivariate_ts`):
the splits are read with aeon's `.ts` reader from `data_dir/NAME/NAME_TRAIN.ts` (or
`data_dir/NAME_TRAIN.ts`) and `_TEST.ts`; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import numpy as np

SHIPPED = ("BasicMotions", "JapaneseVowels", "ArrowHead", "GunPoint", "ItalyPowerDemand",
           "OSULeaf", "ACSF1")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Split:
    """x [N, T, C] float32 (padded), mask [N, T] bool, labels [N] int32 in [0, num_classes)."""

    x: np.ndarray
    mask: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    test: Split
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_channels(self) -> int:
        return self.train.x.shape[-1]

    @property
    def length(self) -> int:
        return self.train.x.shape[1]


def _aeon_loader():
    try:
        return importlib.import_module("aeon.datasets").load_classification
    except ImportError as err:
        raise ImportError(
            "the UEA/UCR sets come from the optional `aeon` package: pip install '.[uea]' "
            "(or pip install 'aeon>=1.3,<2')"
        ) from err


def _local(name: str, split: str, data_dir: str):
    """A split from a local copy of the UEA/UCR archive, with aeon's `.ts` reader."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise ValueError(f"data_dir {str(root)!r} for UEA/UCR dataset {name!r} is not a directory")
    file = f"{name}_{split.upper()}.ts"
    candidates = [root / name / file, root / file]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise ValueError(
            f"UEA/UCR dataset {name!r} ({split}): no {file} in {root} (looked for "
            f"{' and '.join(str(c) for c in candidates)})"
        )
    _aeon_loader()  # the install hint when aeon is missing
    reader = importlib.import_module("aeon.datasets").load_from_ts_file
    try:
        X, y = reader(str(path))
    except Exception as err:  # aeon raises IOError / ValueError / others for a bad file
        raise ValueError(f"{path} is not a readable .ts file: {err}") from err
    if len(X) == 0:  # aeon's reader returns empty arrays for a file it cannot parse
        raise ValueError(f"{path} holds no series: not a readable .ts file")
    if y is None or len(y) != len(X):
        raise ValueError(f"{path} has no class labels for its {len(X)} series")
    return X, y


def _raw(name: str, split: str, data_dir: str | None = None):
    if data_dir:
        return _local(name, split, data_dir)
    load = _aeon_loader()
    try:
        # No extract_path: aeon looks in the data shipped with its wheel first and only then
        # tries to download, which fails cleanly offline.
        return load(name, split=split)
    except Exception as err:  # aeon raises several types for unknown / undownloadable names
        raise ValueError(
            f"UEA/UCR dataset {name!r} ({split}) could not be loaded from aeon ({err}); the sets "
            f"shipped with aeon's wheel include {', '.join(SHIPPED)}"
        ) from err


def _series_list(X) -> list[np.ndarray]:
    """aeon gives [N, C, T] arrays for equal-length sets and lists of [C, T_i] otherwise."""
    return [np.asarray(x, np.float64) for x in X]


def _pad(series: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    C = series[0].shape[0]
    x = np.zeros((len(series), length, C), np.float64)
    mask = np.zeros((len(series), length), bool)
    for row, s in enumerate(series):
        T = min(s.shape[1], length)
        x[row, :T] = s[:, :T].T
        mask[row, :T] = True
    return x, mask


def load(name: str, *, max_length: int | None = None, data_dir: str | None = None) -> Dataset:
    """The train and test splits of `name`, padded, masked and standardised.

    max_length truncates longer series (keeping their start); None keeps the full length.
    data_dir: a local copy of the UEA/UCR archive (see the module docstring); None reads the
    sets shipped with aeon.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be >= 1 or None, got {max_length}")
    (X_train, y_train), (X_test, y_test) = (_raw(name, s, data_dir) for s in ("train", "test"))
    train, test = _series_list(X_train), _series_list(X_test)
    longest = max(s.shape[1] for s in train + test)
    length = longest if max_length is None else min(longest, max_length)
    x_train, m_train = _pad(train, length)
    x_test, m_test = _pad(test, length)

    real = x_train[m_train]  # [steps, C]
    mean, std = real.mean(axis=0), real.std(axis=0)
    std = np.where(std > 0, std, 1.0)

    def standardised(x, mask):
        return np.where(mask[..., None], (x - mean) / std, 0.0).astype(np.float32)

    classes = tuple(sorted(set(map(str, y_train)) | set(map(str, y_test))))
    index = {c: i for i, c in enumerate(classes)}

    def labels(y):
        return np.array([index[str(v)] for v in y], np.int32)

    return Dataset(
        name=name,
        train=Split(standardised(x_train, m_train), m_train, labels(y_train)),
        test=Split(standardised(x_test, m_test), m_test, labels(y_test)),
        classes=classes,
    )
