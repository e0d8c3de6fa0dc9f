"""`LrcMixer`: one LRC cell over a sequence as a sequence mixer (the `nn.mixer.Mixer` protocol).

x [B, T, M] -> the cell's states [B, T, state] (real part for the complex cell), read out to M by
a linear map when state != M (none when they are equal, as in the LrcSSM paper's networks). The
Newton solve's iteration count is sown as `nnx.Intermediate` "newton_iterations" when the call
runs under `nnx.capture`, so a model can report it. Decoding (`init_cache` / `step`) runs the
cell one step at a time.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax.lrcssm import cell, solver
from lcsm_jax.nn.init import dense

MODES = ("newton", "sequential", "input")


@dataclasses.dataclass(frozen=True)
class LrcConfig:
    """mode: "newton" (parallel quasi-DEER solve), "sequential" (the `lax.scan` rollout, same
    function) or "input" (the input-only cell, one exact scan). state: the cell's state size D
    (None: embed_dim). complex_state: the complex variant (newton / sequential only)."""

    embed_dim: int
    state: int | None = None
    mode: str = "newton"
    complex_state: bool = False
    solver: solver.SolverConfig = solver.SolverConfig()

    def __post_init__(self):
        for name in ("embed_dim", "state"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"lrcssm {name} must be a positive int, got {value!r}")
        if self.mode not in MODES:
            raise ValueError(f"lrcssm mode={self.mode!r}; valid: {', '.join(MODES)}")
        if self.complex_state and self.mode == "input":
            raise ValueError(
                "the input-only cell is real: complex_state needs mode newton/sequential"
            )

    @property
    def state_size(self) -> int:
        return self.embed_dim if self.state is None else self.state


class LrcMixer(nnx.Module):
    """One LRC cell. Complex parameters are stored as [2, D] (real, imaginary) pairs so that the
    optimizer only ever sees real arrays."""

    def __init__(self, config: LrcConfig, *, rngs: nnx.Rngs):
        self.config = config
        M, D = config.embed_dim, config.state_size
        key = rngs.params()
        if config.mode == "input":
            params = cell.init_input_params(key, M, D)
        else:
            params = cell.init_params(key, M, D, complex_state=config.complex_state)
        self.kind = type(params)
        self.weights = nnx.Dict(
            {
                name: nnx.Param(jnp.stack([v.real, v.imag]) if jnp.iscomplexobj(v) else v)
                for name, v in params._asdict().items()
            }
        )
        self.complex_fields = tuple(
            name for name, v in params._asdict().items() if jnp.iscomplexobj(v)
        )
        self.readout = nnx.data(None) if D == M else dense(D, M, rngs)

    def cell_params(self):
        # By field name: nnx.capture adds its own entries to the nnx.Dict while it runs.
        values = {name: self.weights[name][...] for name in self.kind._fields}
        for name in self.complex_fields:
            values[name] = jax.lax.complex(values[name][0], values[name][1])
        return self.kind(**values)

    def _out(self, x):
        x = jnp.real(x)
        return x if self.readout is None else self.readout(x)

    def __call__(self, x_BxTxM, segment_ids=None):
        """The cell's states over the sequence, [B, T, M]."""
        if segment_ids is not None:
            raise ValueError("lrcssm does not take segment_ids (its cell state is not reset)")
        params, mode = self.cell_params(), self.config.mode
        iterations = jnp.zeros((), jnp.int32)
        if mode == "input":
            x = solver.solve_input_only(params, x_BxTxM, backend=self.config.solver.backend)
        elif mode == "sequential":
            x = cell.rollout(params, x_BxTxM)
        else:
            x, info = solver.solve(params, x_BxTxM, config=self.config.solver)
            iterations = info.iterations
        if hasattr(self, "__captures__"):  # under nnx.capture; sow is deprecated elsewhere
            self.sow(nnx.Intermediate, "newton_iterations", iterations)
        return self._out(x)

    def init_cache(self, batch_size: int):
        """The cell state before the first token: zeros [B, state]."""
        dtype = jnp.complex64 if self.complex_fields else jnp.float32
        return jnp.zeros((batch_size, self.config.state_size), dtype)

    def step(self, x_BxM, state_BxD):
        """One token: x [B, M] and the cell state -> (y [B, M], next state)."""
        params = self.cell_params()
        if self.config.mode == "input":
            decay, bias = cell.input_coefficients(params, x_BxM[:, None])
            state_BxD = decay[:, 0] * state_BxD + bias[:, 0]
        else:
            state_BxD = cell.cell(params, state_BxD, x_BxM)
        return self._out(state_BxD), state_BxD
