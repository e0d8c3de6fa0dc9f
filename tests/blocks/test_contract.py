"""The `Mixer` contract, checked once for every full block of the catalogue (`catalogue.BLOCKS`)
at width 8 with its parameters moved off their init: decoding through the cache equals the
parallel output, the output is exactly causal, packed sequences stay apart, jit + grad is finite
and reaches every parameter, and the wrong config class raises TypeError.

Each check compiles one program. The blocks run the sequential "reference" backend (the fastest
to compile on CPU) but in the packing check, which runs "auto" (the backend a user gets; on CPU at
these sizes the chunked scan, the associative one for RWKV-4), so that the restarts of a parallel
scan are checked too. The block files test every backend against their float64 oracles;
`test_in_models.py` trains every block inside the language model under jit on "auto"."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax import catalogue
from tests.blocks.helpers import close, decode_and_parallel, inputs, perturb
from tests.blocks.small import SMALL

NAMES = list(catalogue.BLOCKS)
B, T, M = 2, 11, 8
# Options on top of the small settings, so that the contract also covers the parts they switch
# on: short convolutions (with bias) and their caches, output gates, the hedgehog feature maps
# and the normaliser's cache, a lower bound on the HGRN2 forget gate, grouped B/C in Mamba-2,
# grouped value heads in Gated DeltaNet, larger S5 steps (faster dynamics).
OPTIONS = {
    "gla": {"use_short_conv": True, "conv_bias": True},
    "hgrn2": {"use_short_conv": True, "conv_bias": True, "lower_bound": 0.3},
    "linear_attention": {"feature_map": "hedgehog", "normalize": True},
    "mamba2": {"ngroups": 2},
    "s5": {"dt_min": 0.01, "dt_max": 1.0},
    "deltanet": {"use_gate": True, "conv_bias": True},
    "gated_deltanet": {"num_v_heads": 4, "conv_bias": True},
}


def test_options_name_blocks():
    assert set(OPTIONS) <= set(NAMES)  # SMALL covers every block: test_in_models.py


@functools.cache
def _block(name, backend="reference"):
    """The block at its small settings with every parameter perturbed (deterministic). Cached:
    no check changes a block."""
    options = {**SMALL[name], **OPTIONS.get(name, {})}
    if "backend" in catalogue.BLOCKS[name].takes():
        options["backend"] = backend
    return perturb(catalogue.build(name, embed_dim=M, rngs=nnx.Rngs(0), **options))


@pytest.mark.parametrize("name", NAMES)
def test_step_by_step_decoding_equals_parallel(name):
    stepped, parallel = decode_and_parallel(_block(name), inputs((B, T, M)))
    assert np.abs(np.asarray(parallel)).max() > 1e-2  # not a vanishing signal
    close(stepped, parallel, 1e-4)


@nnx.jit
def _jacobian(block, x):
    """d y[0, t] / d x[0, s] as [T, M, T, M]."""
    return jax.jacrev(lambda x: block(x)[0])(x)[:, :, 0]


@pytest.mark.parametrize("name", NAMES)
def test_exactly_causal(name):
    jac = np.asarray(_jacobian(_block(name), inputs((1, T, M))))
    future = np.broadcast_to(np.triu(np.ones((T, T), bool), k=1)[:, None, :, None], jac.shape)
    assert np.all(jac[future] == 0), "an output depends on a later input"
    for t in range(T):
        assert np.any(jac[t, :, : t + 1] != 0), f"y_{t} depends on no input"
    assert np.any(jac[T - 1, :, 0] != 0), "the first input does not reach the last output"


@nnx.jit
def _packed_and_alone(block, packed, segment_ids, alone):
    return block(packed, segment_ids=segment_ids), block(alone)


# Rows of packed sequences: their lengths and ids (an id may also decrease); the last row is one
# sequence under an id, which must equal running it without ids.
PACKING = (((5, 6), (0, 1)), ((3, 8), (7, 3)), ((T,), (4,)))


@pytest.mark.parametrize("name", NAMES)
def test_packed_sequences_equal_each_run_alone(name):
    # Alone, each sequence runs from t = 0 of its own row, zero padded to T (harmless: the
    # block is causal).
    x = inputs((len(PACKING), T, M))
    ids = jnp.asarray([np.repeat(seq_ids, lengths) for lengths, seq_ids in PACKING])
    spans = [
        (row, start, n)
        for row, (lengths, _) in enumerate(PACKING)
        for start, n in zip(np.cumsum((0, *lengths[:-1])), lengths, strict=True)
    ]
    alone = jnp.stack([jnp.pad(x[row, s : s + n], ((0, T - n), (0, 0))) for row, s, n in spans])
    y, y_alone = _packed_and_alone(_block(name, "auto"), x, ids, alone)
    for k, (row, s, n) in enumerate(spans):
        close(y[row, s : s + n], y_alone[k, :n])


@nnx.jit
def _loss_and_grads(block, x, segment_ids):
    return nnx.value_and_grad(lambda m: jnp.mean(m(x, segment_ids=segment_ids) ** 2))(block)


@pytest.mark.parametrize("name", NAMES)
def test_jit_and_grad_reach_every_parameter(name):
    ids = jnp.asarray([[0] * 5 + [1] * 6] * B)
    loss, grads = _loss_and_grads(_block(name), inputs((B, T, M)), ids)
    assert np.isfinite(float(loss))
    flat = nnx.to_flat_state(nnx.state(grads, nnx.Param))
    assert flat
    for path, grad in flat:
        g = np.asarray(grad[...])
        where = ".".join(map(str, path))
        assert np.all(np.isfinite(g)), f"{name}: gradient of {where} not finite"
        assert np.any(g != 0), f"{name}: {where} gets no gradient"  # none is exempt


@pytest.mark.parametrize("name", NAMES)
def test_wrong_config_class_raises(name):
    family = catalogue.BLOCKS[name]
    config = family.config(embed_dim=M, **SMALL[name])
    for wrong in (object(), vars(config)):  # a config's fields without its class do not pass
        with pytest.raises(TypeError, match=family.config.__name__):
            family.layer(wrong, rngs=nnx.Rngs(0))
