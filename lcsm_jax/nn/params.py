"""Between an NNX model and the plain, string-keyed dict of arrays that the train step, the
optimizer, the sharding rules and orbax all see."""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx


def _string_keys(tree):
    if isinstance(tree, dict):
        return {str(k): _string_keys(v) for k, v in tree.items()}
    return tree


class ModelParams:
    """`make_model()` builds the model; params are `nnx.Param` values only (a pure dict)."""

    def __init__(self, make_model: Callable[[], nnx.Module]):
        self._make_model = make_model
        self.graphdef, state, others = nnx.split(nnx.eval_shape(make_model), nnx.Param, ...)
        if jax.tree.leaves(others):
            raise TypeError(
                "the model holds state other than nnx.Param, which the trainer would not save: "
                f"{jax.tree.map(lambda x: x.shape, nnx.to_pure_dict(others))}"
            )
        self._template, self._others = state, others
        self.abstract = _string_keys(nnx.to_pure_dict(state))

    def init(self):
        """Fresh parameters (call under jit with out_shardings to create them sharded)."""
        return _string_keys(nnx.to_pure_dict(nnx.split(self._make_model(), nnx.Param, ...)[1]))

    def model(self, params) -> nnx.Module:
        """The model with `params` (usable inside jit)."""
        state = jax.tree.map(lambda x: x, self._template)  # a fresh copy to fill in
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(self.graphdef, state, self._others)
