"""UEA/UCR loading (aeon, optional): shapes, padding masks, standardisation, clear errors."""

import builtins
import sys
from pathlib import Path

import numpy as np
import pytest

from lcsm_jax.data import uea


def test_missing_aeon_is_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_aeon(name, *args, **kwargs):
        if name.startswith("aeon"):
            raise ImportError("No module named 'aeon'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_aeon)
    monkeypatch.delitem(sys.modules, "aeon.datasets", raising=False)
    with pytest.raises(ImportError, match=r"pip install '\.\[uea\]'"):
        uea.load("BasicMotions")


def test_bad_arguments():
    with pytest.raises(ValueError, match="name"):
        uea.load("")
    with pytest.raises(ValueError, match="max_length"):
        uea.load("BasicMotions", max_length=0)


def test_equal_length_set():
    pytest.importorskip("aeon")
    data = uea.load("BasicMotions")
    assert data.train.x.shape == (40, 100, 6) and data.test.x.shape == (40, 100, 6)
    assert data.train.x.dtype == np.float32 and data.num_classes == 4
    assert data.train.mask.all() and data.test.mask.all()
    assert set(np.unique(data.train.labels)) == set(range(4))
    # Standardised with training statistics.
    np.testing.assert_allclose(data.train.x.reshape(-1, 6).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(data.train.x.reshape(-1, 6).std(0), 1, atol=1e-4)


def test_variable_length_set_is_padded_and_masked():
    pytest.importorskip("aeon")
    data = uea.load("JapaneseVowels")
    assert data.num_channels == 12 and data.num_classes == 9
    lengths = np.concatenate([data.train.mask.sum(1), data.test.mask.sum(1)])
    assert lengths.min() < lengths.max() == data.length  # padded to the longest series
    for split in (data.train, data.test):
        prefix = np.cumprod(split.mask, axis=1).astype(bool)
        np.testing.assert_array_equal(prefix, split.mask)  # real steps first, then padding
        assert (split.x[~split.mask] == 0).all()
    truncated = uea.load("JapaneseVowels", max_length=10)
    assert truncated.length == 10 and truncated.train.mask.sum(1).max() == 10


def test_unknown_dataset_names_the_shipped_ones():
    pytest.importorskip("aeon")
    with pytest.raises(ValueError, match="BasicMotions"):
        uea.load("NoSuchDataset")


def _local_copy(root, name: str, rows: int = 6):
    """A small local copy in the UEA archive's layout: root/NAME/NAME_{TRAIN,TEST}.ts, made from
    the first series of the shipped BasicMotions and JapaneseVowels (variable length)."""
    from aeon.datasets import load_classification, save_to_ts_file

    picks = np.arange(rows) * 40  # several classes (the shipped sets are sorted by class)
    for split in ("train", "test"):
        X, y = load_classification("JapaneseVowels", split=split)
        X, y = [X[i] for i in picks], np.asarray(y)[picks]
        save_to_ts_file(
            X, y, label_type="classification", path=str(root / name),
            problem_name=f"{name}_{split.upper()}",
        )  # fmt: skip
    train = load_classification("JapaneseVowels", split="train")[0]
    return [np.asarray(train[i]) for i in picks]


def test_a_long_set_loads_from_a_local_copy_of_the_archive(tmp_path):
    pytest.importorskip("aeon")
    written = _local_copy(tmp_path, "EigenWorms")
    data = uea.load("EigenWorms", data_dir=str(tmp_path))
    assert data.name == "EigenWorms" and len(data.train) == len(data.test) == 6
    assert data.num_channels == 12 and data.length >= max(x.shape[1] for x in written)
    lengths = data.train.mask.sum(1)
    np.testing.assert_array_equal(lengths, [x.shape[1] for x in written])
    # The values are the written series, standardised with the training split's statistics.
    real = np.concatenate([x.T for x in written])
    mean, std = real.mean(0), real.std(0)
    np.testing.assert_allclose(
        data.train.x[0, : lengths[0]], (written[0].T - mean) / std, atol=1e-5
    )
    # The same files one level up (NAME_TRAIN.ts directly in data_dir) load too.
    flat = uea.load("EigenWorms", data_dir=str(tmp_path / "EigenWorms"))
    np.testing.assert_array_equal(flat.train.x, data.train.x)


def test_a_local_copy_is_reached_through_the_config(tmp_path):
    pytest.importorskip("aeon")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "configs"))
    import uea as uea_config  # configs/uea.py

    from lcsm_jax.data.uea_task import UEAData
    from lcsm_jax.train import experiment

    _local_copy(tmp_path, "Heartbeat")
    arg = f"dataset=Heartbeat,data_dir={tmp_path},model=lru,d_model=8,batch=2"
    exp = experiment.translate(uea_config.get_config(arg))
    assert exp.data.data_dir == str(tmp_path)
    data = UEAData(exp.data, exp.train.batch_size)
    assert data.dataset.name == "Heartbeat" and len(data.dataset.train) == 6


def test_local_copy_errors_name_the_problem(tmp_path):
    pytest.importorskip("aeon")
    with pytest.raises(ValueError, match="is not a directory"):
        uea.load("EigenWorms", data_dir=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no EigenWorms_TRAIN.ts"):
        uea.load("EigenWorms", data_dir=str(tmp_path))
    (tmp_path / "EigenWorms").mkdir()
    (tmp_path / "EigenWorms" / "EigenWorms_TRAIN.ts").write_text("@problemName x\nnot a ts file\n")
    with pytest.raises(ValueError, match="not a readable .ts file"):
        uea.load("EigenWorms", data_dir=str(tmp_path))
