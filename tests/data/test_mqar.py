"""The MQAR generator: structure of every example, determinism, seeds, validity errors."""

import numpy as np
import pytest

from lcsm_jax.data import mqar
from lcsm_jax.data.mqar_task import MQARData, MQARTask

SETTING = dict(vocab_size=128, seq_len=64, num_kv_pairs=4)


def test_every_key_queried_once_and_labels_are_the_paired_values():
    inputs, labels = mqar.generate(200, seed=0, **SETTING)
    assert inputs.shape == labels.shape == (200, 64)
    half, context = 64, 8
    for x, y in zip(inputs, labels, strict=True):
        keys, values = x[0:context:2], x[1:context:2]
        assert np.all((1 <= keys) & (keys < half)) and len(set(keys)) == 4
        assert np.all((half <= values) & (values < 128)) and len(set(values)) == 4
        scored = np.flatnonzero(y != mqar.IGNORE)
        assert len(scored) == 4
        # Labels sit exactly at the query positions: after the context, on the queried key.
        assert np.all(scored >= context) and np.all((scored - context) % 2 == 0)
        assert sorted(x[scored]) == sorted(keys)
        pair = dict(zip(keys, values, strict=True))
        assert all(y[p] == pair[x[p]] for p in scored)
        rest = np.setdiff1d(np.arange(context, 64), scored)
        assert np.all(x[rest] == 0)  # filler without random_non_queries


def test_random_non_queries_fills_only_filler():
    a, la = mqar.generate(50, seed=3, **SETTING)
    b, lb = mqar.generate(50, seed=3, random_non_queries=True, **SETTING)
    np.testing.assert_array_equal(la, lb)
    keep = a != 0
    np.testing.assert_array_equal(a[keep], b[keep])
    assert np.mean(b[~keep] != 0) > 0.9


def test_deterministic_and_seed_dependent():
    a = mqar.generate(20, seed=5, **SETTING)
    b = mqar.generate(20, seed=5, **SETTING)
    c = mqar.generate(20, seed=6, **SETTING)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_train_and_test_seeds_are_disjoint():
    assert mqar.split_seed(0, "train") != mqar.split_seed(0, "test")
    assert len({mqar.split_seed(s, k) for s in range(50) for k in mqar.SPLITS}) == 100
    with pytest.raises(ValueError, match="split"):
        mqar.split_seed(0, "valid")


def test_short_gaps_are_favoured():
    _, labels = mqar.generate(500, seed=1, vocab_size=512, seq_len=256, num_kv_pairs=4)
    positions = np.flatnonzero((labels != mqar.IGNORE).ravel()) % 256
    assert np.median(positions) < 128  # a power law with a = 0.01 concentrates near the context


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(vocab_size=128, seq_len=63, num_kv_pairs=4), "even seq_len"),
        (dict(vocab_size=64, seq_len=64, num_kv_pairs=4), "vocab_size > seq_len"),
        (dict(vocab_size=128, seq_len=64, num_kv_pairs=17), "4·num_kv_pairs <= seq_len"),
        (dict(vocab_size=128, seq_len=64, num_kv_pairs=0), "num_kv_pairs must be >= 1"),
        (dict(vocab_size=128, seq_len=64, num_kv_pairs=4, power_a=0.0), "power_a"),
    ],
)
def test_invalid_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mqar.generate(4, seed=0, **kwargs)


def test_batches_are_a_pure_function_of_step():
    task = MQARTask(vocab_size=128, seq_len=32, num_kv=2, num_train=100, num_test=10)
    one, two = MQARData(task, 16), MQARData(task, 16)
    for step in (0, 5, 6, 13):  # 6 steps per epoch: crosses epochs
        a, b = one.train_batch(step), two.train_batch(step)
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
    assert not np.array_equal(one.train_batch(0)["inputs"], one.train_batch(6)["inputs"])
    epoch = np.concatenate([one.train_batch(s)["inputs"] for s in range(6)])
    assert len({row.tobytes() for row in epoch}) == 96  # no example twice within an epoch
