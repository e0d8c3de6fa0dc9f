"""`EOSMixer`: the skeleton every EOS layer shares, built from a `LayerSpec`.

i, e, s, o = stages(x)          (per head; e, s in R^K, i in R^D, o a log-decay)
y, m = eos.eos_scan(e, i, o, s)  (T = 1 when decoding one token: one reference step)
out = W_out LayerNorm(y)         (no bias, eps 1e-5; heads concatenated back to M)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import eos
from lcsm_jax.layers.registry import OSCILLATIONS
from lcsm_jax.layers.spec import LayerSpec
from lcsm_jax.layers.stages import EXPANDS, INPUTS, SHRINKS, projection
from lcsm_jax.layers.terms import Context, EOSState, Terms
from lcsm_jax.nn.init import make_layer_norm


def _stage_class(registry: dict, field: str, name: str):
    if name not in registry:
        raise ValueError(f"{field}={name!r} is not a known stage; valid: {', '.join(registry)}")
    return registry[name]


def _read(terms: Terms) -> jax.Array:
    """The shrink the core reads with: s, with a folded data-independent e factor multiplied in."""
    if terms.fold is None:
        return terms.s
    if terms.s is None:
        return terms.fold
    s = terms.s[..., None] if terms.s.ndim == 4 else terms.s
    return s * terms.fold


# Jitted once here so that eager calls of a layer reuse the compiled core for equal shapes and
# structures (inside an outer jit this is inlined); `step` is its T == 1 path. No decay is passed
# as None: a traced 0 would read as a scalar decay.
_scan = jax.jit(eos.eos_scan, static_argnames=("backend", "chunk_size"))


def _no_zero(log_o):
    return None if isinstance(log_o, int | float) and log_o == 0 else log_o


class EOSMixer(nnx.Module):
    """An EOS sequence-mixing layer, x [B, T, M] -> y [B, T, M], built from a `LayerSpec`.

    Every layer of this package (the paper grid `EOSLayer` and each catalogue method) is an
    `EOSMixer`, so all share `__call__`, `init_cache` and `step` (the `lcsm_jax.nn.mixer.Mixer`
    protocol, plus `initial_state` and `return_state`).
    """

    def __init__(self, spec: LayerSpec, *, rngs: nnx.Rngs):
        osc_class = _stage_class(OSCILLATIONS, "oscillation", spec.oscillation)
        unknown = sorted(set(dict(spec.options)) - set(osc_class.OPTIONS))
        if unknown:
            raise ValueError(
                f"options {unknown} are not read by oscillation {spec.oscillation!r}; "
                f"it reads: {sorted(osc_class.OPTIONS) or 'none'}"
            )
        dims = spec.dims
        self.spec = spec
        self.dims = dims
        self.inputs = _stage_class(INPUTS, "inputs", spec.inputs)(dims, spec, rngs=rngs)
        self.expand = _stage_class(EXPANDS, "expand", spec.expand)(dims, spec, rngs=rngs)
        self.shrink = _stage_class(SHRINKS, "shrink", spec.shrink)(dims, spec, rngs=rngs)
        self.oscillation = osc_class(dims, spec, rngs=rngs)
        self.norm = make_layer_norm(dims.M, rngs, dtype=spec.dtype, param_dtype=spec.param_dtype)
        self.out = projection(spec, dims.M, dims.M, rngs, bias=False)

    @property
    def structure(self) -> str:
        """The log-decay structure handed to the core (none/scalar/k/d/separable/product/full)."""
        return self.oscillation.STRUCTURE

    def resolved_backend(self, x_BxTxM: jax.Array) -> str:
        """The core backend a call on x runs (the spec's backend, with "auto" resolved).

        A one-token x (T = 1, as in `step`) resolves the same way but runs one reference step.
        """
        B, T, _ = x_BxTxM.shape
        ctx = Context(jnp.zeros((B, T), jnp.int32), None, None)
        terms = self.terms(x_BxTxM, ctx)
        problem = eos.problem(terms.e, terms.i, _no_zero(terms.log_o), _read(terms))
        return eos.resolve_backend(self.spec.backend, problem)

    def init_cache(self, batch_size: int) -> EOSState:
        """An empty state for `batch_size` sequences (zero memory, position 0)."""
        H, D = self.dims.H, self.dims.D
        dtype = jnp.complex64 if self.oscillation.COMPLEX else jnp.float32
        return EOSState(
            memory=jnp.zeros((batch_size, H, self.oscillation.memory_rows(), D), dtype),
            position=jnp.zeros((batch_size,), jnp.int32),
            lse=self.oscillation.init_lse(batch_size),
        )

    def terms(self, x_BxTxM: jax.Array, ctx: Context) -> Terms:
        """The EOS inputs (e, i, log_o, s, ...) the stages build from x."""
        terms = Terms()
        for stage in (self.inputs, self.expand, self.shrink, self.oscillation):
            terms = stage(x_BxTxM, terms, ctx)
        return terms

    def _output(self, y_BxTxHxD: jax.Array) -> jax.Array:
        if jnp.iscomplexobj(y_BxTxHxD):
            y_BxTxHxD = y_BxTxHxD.real
        y = y_BxTxHxD.reshape(*y_BxTxHxD.shape[:2], self.dims.M).astype(self.spec.dtype)
        return self.out(self.norm(y))

    def __call__(
        self,
        x_BxTxM: jax.Array,
        initial_state: EOSState | None = None,
        segment_ids: jax.Array | None = None,
        return_state: bool = False,
    ):
        """Mixes a sequence in parallel.

        Args:
          x_BxTxM: input [B, T, M].
          initial_state: an `EOSState` to continue from (from `init_cache`, `step` or a previous
            call with return_state=True); None starts from an empty memory at position 0.
          segment_ids: [B, T] ints; the memory restarts where the id changes (packed sequences).
          return_state: also return the `EOSState` after the last token.

        Returns:
          y [B, T, M], or (y, state) when return_state.
        """
        if x_BxTxM.ndim != 3 or x_BxTxM.shape[-1] != self.dims.M:
            raise ValueError(f"x must be [B, T, {self.dims.M}], got shape {x_BxTxM.shape}")
        B, T, _ = x_BxTxM.shape
        if initial_state is None:
            position_B = jnp.zeros((B,), jnp.int32)
            memory, lse = None, None
        else:
            position_B, memory, lse = (
                initial_state.position,
                initial_state.memory,
                initial_state.lse,
            )
        position_BxT = position_B[:, None] + jnp.arange(T, dtype=jnp.int32)[None]
        ctx = Context(position_BxT, eos.segment_resets(segment_ids, B, T), lse)
        terms = self.terms(x_BxTxM, ctx)
        y, memory = _scan(
            terms.e,
            terms.i,
            _no_zero(terms.log_o),
            _read(terms),
            initial_state=memory,
            segment_ids=segment_ids,
            backend=self.spec.backend,
            chunk_size=self.spec.chunk_size,
        )
        out = self._output(y)
        if not return_state:
            return out
        return out, EOSState(memory, position_B + T, terms.lse)

    def step(self, x_BxM: jax.Array, cache: EOSState) -> tuple[jax.Array, EOSState]:
        """Decodes one token in O(1): x [B, M] and a state -> (y [B, M], next state)."""
        if x_BxM.ndim != 2 or x_BxM.shape[-1] != self.dims.M:
            raise ValueError(f"x_t must be [B, {self.dims.M}], got shape {x_BxM.shape}")
        ctx = Context(cache.position[:, None], None, cache.lse)
        terms = self.terms(x_BxM[:, None], ctx)
        y, memory = _scan(
            terms.e,
            terms.i,
            _no_zero(terms.log_o),
            _read(terms),
            initial_state=cache.memory,
            backend=self.spec.backend,
            chunk_size=self.spec.chunk_size,
        )
        out = self._output(y)[:, 0]
        return out, EOSState(memory, cache.position + 1, terms.lse)
