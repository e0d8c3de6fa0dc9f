"""UEA/UCR loading (aeon, optional): shapes, padding masks, standardisation, clear errors."""

import builtins
import sys

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
