"""The Flax pieces every model family shares: the project's init (`init`), structured linears
(`linear`, `monarch`), the causal short convolution (`conv`), the S4D-Lin diagonal SSM (`s4d`),
the `Mixer` protocol every sequence mixer satisfies (`mixer`) and the NNX <-> pure-pytree
parameter bridge (`params`)."""
