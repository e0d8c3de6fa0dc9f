"""The Flax pieces every model family shares: the project's init, structured linears (Monarch,
block-diagonal), the causal short convolution and the NNX <-> pure-pytree parameter bridge."""
