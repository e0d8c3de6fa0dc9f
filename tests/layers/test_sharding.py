"""A model of EOS layers trains on a 2×2 (data, fsdp) mesh of fake CPU devices, as on one device."""

from __future__ import annotations

import chex
import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lcsm_jax.layers import EOSConfig, EOSLayer

VOCAB, M, B, T = 16, 8, 4, 9


class TinyLM(nnx.Module):
    """Embedding, two pre-LayerNorm residual EOS blocks (chunked and scan paths), tied head."""

    def __init__(self, rngs: nnx.Rngs):
        self.embed = nnx.Embed(VOCAB, M, rngs=rngs)
        configs = (
            EOSConfig(embed_dim=M, expand_dim=4, num_heads=2, o_type=3),
            EOSConfig(embed_dim=M, expand_dim=4, num_heads=2, c_type=0, ssm_dim=2),
        )
        self.norms = nnx.List([nnx.LayerNorm(M, rngs=rngs) for _ in configs])
        self.mixers = nnx.List([EOSLayer(c, rngs=rngs) for c in configs])
        self.final_norm = nnx.LayerNorm(M, rngs=rngs)

    def __call__(self, tokens_BxT):
        h = self.embed(tokens_BxT)
        for norm, mixer in zip(self.norms, self.mixers, strict=True):
            h = h + mixer(norm(h))
        return self.embed.attend(self.final_norm(h))


def _rule(mesh, shape) -> NamedSharding:
    """fsdp-shard the leading axis of matrices that split evenly; replicate everything else."""
    if len(shape) >= 2 and shape[0] % mesh.shape["fsdp"] == 0:
        return NamedSharding(mesh, P("fsdp", *([None] * (len(shape) - 1))))
    return NamedSharding(mesh, P())


def _train(mesh: Mesh | None, steps: int = 2):
    model = TinyLM(nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adamw(1e-2, weight_decay=0.1)
    tokens = jax.random.randint(jax.random.key(1), (B, T), 0, VOCAB)

    def train_step(params, opt_state, tokens_BxT):
        def loss_fn(params):
            logits = nnx.merge(graphdef, params)(tokens_BxT[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens_BxT[:, 1:]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    if mesh is None:
        step = jax.jit(train_step)
        opt_state = tx.init(params)
    else:
        shard = lambda tree: jax.tree.map(lambda x: _rule(mesh, x.shape), tree)  # noqa: E731
        param_sh = shard(params)
        opt_sh = shard(jax.eval_shape(tx.init, params))
        params = jax.device_put(params, param_sh)
        opt_state = jax.jit(tx.init, out_shardings=opt_sh)(params)
        tokens = jax.device_put(tokens, NamedSharding(mesh, P("data", None)))
        step = jax.jit(
            train_step,
            in_shardings=(param_sh, opt_sh, NamedSharding(mesh, P("data", None))),
            out_shardings=(param_sh, opt_sh, NamedSharding(mesh, P())),
        )
    losses = []
    for _ in range(steps):
        params, opt_state, loss = step(params, opt_state, tokens)
        losses.append(loss)
    return np.asarray(losses), params


def test_sharded_training_step_matches_one_device():
    if len(jax.devices()) < 4:
        pytest.skip("needs 4 devices (tests/conftest.py fakes 8 CPU devices)")
    mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("data", "fsdp"))
    losses, params = _train(mesh)
    kernel = params["mixers"][0]["inputs"]["proj"]["kernel"]
    assert len(kernel.sharding.device_set) == 4 and not kernel.sharding.is_fully_replicated
    ref_losses, ref_params = _train(None)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-6)
    assert losses[1] < losses[0]
    chex.assert_trees_all_close(jax.device_get(params), jax.device_get(ref_params), atol=1e-5)
