"""Every grid cell of the paper equals the float64 NumPy transcription of SPEC §2."""

from __future__ import annotations

import zlib

import chex
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.layers import EOSConfig, EOSLayer, grid_cells

from .helpers import cell_id, inputs, randomise
from .oracle import reference_output

CELLS = grid_cells()
B, T, M, H, K = 2, 6, 8, 2, 3  # K != D = 4 and K·D = 12 not a power of two (ALiBi fallback)


def test_grid_is_complete():
    # 1 SSM cell; o 0/4/5: 4 (e,s) × 2 (learned) × 8 t; o 1-3, 6-10: 4 × 8; o 11/12: 8 each.
    assert len(CELLS) == 1 + 3 * 64 + 8 * 32 + 2 * 8


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_cell_matches_spec_transcription(cell):
    config = EOSConfig(embed_dim=M, expand_dim=K, num_heads=H, tau=2.0, **cell)
    layer = randomise(EOSLayer(config, rngs=nnx.Rngs(0)), seed=zlib.crc32(cell_id(cell).encode()))
    x = inputs(B, T, M)
    y = layer(x)
    chex.assert_shape(y, (B, T, M))
    chex.assert_trees_all_close(
        np.asarray(y, np.float64), reference_output(layer, x), atol=2e-4, rtol=2e-4
    )
