"""Sample text from a trained language model with recurrent decoding (O(1) per token).

    python generate.py --config configs/lm.py --workdir runs/lm_gla --prompt "In the beginning" \
        --num_tokens 200 --temperature 0.8 --top_k 40 [--num_samples 2] [--step N] [--seed 0]

Restores the latest (or the given) checkpoint of the run, feeds the prompt (after an end-of-text
token, as every training document follows one) through the model's `step`, samples, prints the
texts and the decoding speed in tokens per second (compilation excluded).
"""

import time

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from lcsm_jax.models.decode import Decoder, SamplingConfig
from lcsm_jax.train import experiment
from lcsm_jax.train.checkpoint import CheckpointError
from lcsm_jax.train.loop import Run

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory holding checkpoints/")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
_PROMPT = flags.DEFINE_string("prompt", "", "text to continue")
_NUM_TOKENS = flags.DEFINE_integer("num_tokens", 200, "tokens to generate")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "independent samples (the batch size)")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "softmax temperature (0: greedy)")
_TOP_K = flags.DEFINE_integer("top_k", 40, "sample among the k most likely tokens (0: all)")
_SEED = flags.DEFINE_integer("seed", 0, "sampling seed")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        exp = experiment.translate(_CONFIG.value)
        if exp.task != "lm":
            raise ValueError(f"generate.py needs a language-model config, got task {exp.task!r}")
        sampling = SamplingConfig(_TEMPERATURE.value, _TOP_K.value)
        run = Run(exp, _WORKDIR.value, create=False)
        state, _ = run.restore(_STEP.value, same_config=False)
        decoder = Decoder(run.params, sampling, _NUM_TOKENS.value)
    except (CheckpointError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    run.checkpoints.close()
    params = jax.device_get(state["params"])  # decoding is one sequence per row: no sharding
    tokenizer = run.data.tokenizer
    prompt = np.concatenate([[tokenizer.eos_id], tokenizer.encode(_PROMPT.value)]).astype(np.int32)
    prompt_BxP = np.tile(prompt, (_NUM_SAMPLES.value, 1))
    logits, cache = decoder.prefill(params, prompt_BxP)
    key = jax.random.key(_SEED.value)
    compiled = decoder.decode.lower(params, logits, cache, key).compile()
    start = time.perf_counter()
    tokens, _, _ = compiled(params, logits, cache, key)
    tokens = np.asarray(jax.block_until_ready(tokens))
    seconds = time.perf_counter() - start
    for i, row in enumerate(tokens):
        print(f"--- sample {i} (step {int(state['step'])})")
        print(_PROMPT.value + tokenizer.decode(row))
    total = tokens.size
    print(
        f"--- {total} tokens in {seconds:.3f} s: {total / seconds:.1f} tokens/s "
        f"({_NUM_SAMPLES.value} x {_NUM_TOKENS.value}, after a {len(prompt)}-token prompt)"
    )


if __name__ == "__main__":
    app.run(main)
