"""Recurrent decoding speed against context length: tokens/s after a 128- and a 4096-token prompt.

    python benchmarks/decode.py                        # GLA and RetNet LMs, CPU size, batch 1
    python benchmarks/decode.py --models gla_core lcsm --contexts 128 4096 16384 --batch 4

An EOS model carries a fixed-size state, so the time per generated token must not depend on how
long the context was. Timed: `--num_tokens` decoding steps (one jitted `lax.scan`) after the
context was fed; compilation and the context itself are excluded; median of `--repeats` runs,
the contexts timed in alternation.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from flax import nnx

from lcsm_jax.models.decode import Decoder, SamplingConfig
from lcsm_jax.models.lm import LanguageModel, LMConfig
from lcsm_jax.nn.params import ModelParams


def lm(mixer: str, args) -> ModelParams:
    options = () if mixer == "lcsm" else (("num_heads", args.heads),)
    if mixer == "lcsm":  # the paper grid with e, o, s all data-dependent
        options = (("e_type", 1), ("o_type", 3), ("s_type", 1), ("num_heads", args.heads))
    config = LMConfig(
        vocab_size=args.vocab,
        d_model=args.d_model,
        num_layers=args.layers,
        mixer=mixer,
        mixer_options=options,
        channel_mixer="glu",
    )
    return ModelParams(lambda: LanguageModel(config, rngs=nnx.Rngs(0)))


def compiled_decode(params, p, context: int, args):
    """The compiled decode step and its inputs, the context already fed."""
    decoder = Decoder(params, SamplingConfig(temperature=1.0, top_k=40), args.num_tokens)
    prompt = np.random.default_rng(0).integers(0, args.vocab, (args.batch, context), np.int32)
    logits, cache = jax.block_until_ready(decoder.prefill(p, prompt))
    key = jax.random.key(0)
    return decoder.decode.lower(p, logits, cache, key).compile(), (p, logits, cache, key)


def tokens_per_second(params, p, args) -> list[float]:
    # Contexts are timed in alternation, so that a change of load on a shared machine hits all
    # of them alike instead of biasing one.
    runs = [compiled_decode(params, p, c, args) for c in args.contexts]
    times = [[] for _ in runs]
    for _ in range(args.repeats):
        for (compiled, inputs), out in zip(runs, times, strict=True):
            start = time.perf_counter()
            jax.block_until_ready(compiled(*inputs))
            out.append(time.perf_counter() - start)
    return [args.batch * args.num_tokens / float(np.median(t)) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["gla_core", "retnet_core"])
    parser.add_argument("--contexts", nargs="+", type=int, default=[128, 4096])
    parser.add_argument("--num_tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--d_model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"device {jax.devices()[0].device_kind}; batch {args.batch}, {args.num_tokens} tokens")
    print(f"{'model':10s} " + " ".join(f"{'ctx ' + str(c):>12s}" for c in args.contexts))
    for mixer in args.models:
        params = lm(mixer, args)
        p = params.init()
        rates = tokens_per_second(params, p, args)
        print(f"{mixer:10s} " + " ".join(f"{r:8.1f} t/s" for r in rates), flush=True)


if __name__ == "__main__":
    main()
