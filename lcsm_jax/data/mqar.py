"""Multi-query associative recall (MQAR), generated as in zoology (Arora et al., ICLR 2024).

An example starts with `num_kv_pairs` key-value pairs `k0 v0 k1 v1 ...` (keys from [1, V/2), values
from [V/2, V), distinct within the example); every key is then queried once, in random order, at
position `context + 2·g` with the gaps g drawn without replacement from [0, (seq_len - context)/2)
with probability ∝ (g+1)^(a-1) (a power law that favours short gaps). The label at a query position
is the value paired with that key; every other label is -100 (not scored). Token 0 is filler unless
`random_non_queries`.

NumPy only. `generate` is a pure function of its arguments; `split_seed` derives disjoint seeds for
the train and test splits so that no example is shared by construction of the random streams.
"""

from __future__ import annotations

import numpy as np

from lcsm_jax.data.batching import IGNORE

SPLITS = ("train", "test")


def check(*, vocab_size: int, seq_len: int, num_kv_pairs: int, power_a: float = 0.01) -> None:
    """Raises ValueError for an MQAR setting zoology rejects (or that cannot be generated)."""
    if seq_len % 2:
        raise ValueError(f"MQAR needs an even seq_len, got seq_len={seq_len}")
    if vocab_size <= seq_len:
        raise ValueError(f"MQAR needs vocab_size > seq_len, got {vocab_size} <= {seq_len}")
    if num_kv_pairs < 1:
        raise ValueError(f"num_kv_pairs must be >= 1, got {num_kv_pairs}")
    if 4 * num_kv_pairs > seq_len:
        raise ValueError(
            f"MQAR needs 4·num_kv_pairs <= seq_len, got num_kv_pairs={num_kv_pairs}, "
            f"seq_len={seq_len}"
        )
    if num_kv_pairs > vocab_size // 2 - 1:
        raise ValueError(
            f"num_kv_pairs={num_kv_pairs} exceeds the {vocab_size // 2 - 1} distinct keys of "
            f"vocab_size={vocab_size}"
        )
    if not power_a > 0:
        raise ValueError(f"power_a must be > 0, got {power_a}")


def split_seed(seed: int, split: str) -> int:
    """A seed for `split` derived from the run seed; train and test streams never coincide."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {SPLITS}")
    state = np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


def generate(
    num_examples: int,
    *,
    vocab_size: int,
    seq_len: int,
    num_kv_pairs: int,
    power_a: float = 0.01,
    random_non_queries: bool = False,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """MQAR examples: (inputs, labels), both int64 [num_examples, seq_len]; labels -100 unscored."""
    check(vocab_size=vocab_size, seq_len=seq_len, num_kv_pairs=num_kv_pairs, power_a=power_a)
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}")
    rng = np.random.default_rng(seed)
    context = 2 * num_kv_pairs
    half = vocab_size // 2
    space = (seq_len - context) // 2
    gap_p = power_a * np.arange(1, space + 1, dtype=np.float64) ** (power_a - 1)
    gap_p /= gap_p.sum()

    keys = np.empty((num_examples, num_kv_pairs), np.int64)
    values = np.empty((num_examples, num_kv_pairs), np.int64)
    gaps = np.empty((num_examples, num_kv_pairs), np.int64)
    for n in range(num_examples):
        keys[n] = rng.choice(np.arange(1, half), size=num_kv_pairs, replace=False)
        values[n] = rng.choice(np.arange(half, vocab_size), size=num_kv_pairs, replace=False)
        gaps[n] = rng.choice(space, size=num_kv_pairs, replace=False, p=gap_p)

    examples = np.zeros((num_examples, seq_len + 1), np.int64)
    examples[:, 0:context:2] = keys
    examples[:, 1:context:2] = values
    rows = np.arange(num_examples)[:, None]
    examples[rows, context + 2 * gaps] = keys
    labels = np.full((num_examples, seq_len + 1), IGNORE, np.int64)
    labels[rows, context + 2 * gaps + 1] = values
    inputs, labels = examples[:, :-1], labels[:, 1:]
    if random_non_queries:
        filler = inputs == 0
        inputs = np.where(filler, rng.integers(0, vocab_size, size=inputs.shape), inputs)
    return np.ascontiguousarray(inputs), np.ascontiguousarray(labels)
