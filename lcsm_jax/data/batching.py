"""What every dataset of the project shares: the ignored label, epoch permutations and fixed-size
(padded) evaluation batches. NumPy only."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

IGNORE = -100  # label of a position the loss skips (MQAR non-queries, padded text windows)


def epoch_rows(seed: int, stream: int, step: int, num_examples: int, batch_size: int):
    """Rows of batch `step`: a slice of the permutation seeded by (seed, stream, epoch), so every
    batch is a pure function of (seed, step) and no row repeats within an epoch. `stream` keeps
    the permutations of different datasets apart."""
    per_epoch = max(num_examples // batch_size, 1)
    epoch, index = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, stream, epoch]).permutation(num_examples)
    return perm[index * batch_size : (index + 1) * batch_size]


def padded_batches(
    arrays: dict[str, np.ndarray], batch_size: int, pad_values: dict[str, float]
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Fixed-size batches over the rows of `arrays` (all of one length), with the number of real
    rows in each; the last batch is padded with `pad_values[name]` (0 for names not listed), so
    one compiled eval step serves every batch. Pad with values the metric does not count."""
    num_rows = len(next(iter(arrays.values())))
    for start in range(0, num_rows, batch_size):
        batch = {name: x[start : start + batch_size] for name, x in arrays.items()}
        real = len(next(iter(batch.values())))
        if real < batch_size:
            batch = {
                name: _pad(x, batch_size, pad_values.get(name, 0)) for name, x in batch.items()
            }
        yield batch, real


def _pad(x: np.ndarray, rows: int, value) -> np.ndarray:
    return np.concatenate([x, np.full((rows - len(x), *x.shape[1:]), value, x.dtype)])
