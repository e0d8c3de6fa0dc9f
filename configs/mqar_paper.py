"""MQAR exactly as in the LCSM paper's zoology runs (for accelerators; hours on a CPU).

    python sweep.py --config configs/mqar_paper.py --sweepdir runs/lcsm_mqar \\
        --models lcsm,gla_core --d_models 32,64,128,256 --slices 32:2,64:4,128:8,256:16 \\
        --lrs 1e-5,5e-5,1e-4,5e-4,1e-3,5e-3,1e-2

Vocabulary 8192, 100k train / 3k test examples, batch 512 (use batch=256 at seq_len 256), 64
epochs with cosine decay and no warmup, AdamW weight decay 0.1, embedding dropout 0.1, 2 blocks
without channel mixer or short convolution, K = 64, τ = 16; early stop at accuracy 0.99; report
the best learning rate per cell.
"""

import importlib.util
from pathlib import Path

from lcsm_jax.train import overrides

_spec = importlib.util.spec_from_file_location("mqar_base", Path(__file__).with_name("mqar.py"))
mqar = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mqar)
ALIASES = mqar.ALIASES


def get_config(arg: str | None = None):
    c = mqar.get_config()
    c.data.vocab_size = 8192
    c.data.num_train = 100_000
    c.data.num_test = 3_000
    c.model.mixer = "lcsm"
    c.model.short_conv = 0
    c.model.embed_dropout = 0.1
    c.model.mixer_options = {"expand_dim": 64, "tau": 16.0}
    c.train.batch_size = 512
    c.train.num_epochs = 64
    c.train.eval_every = 1000
    c.train.save_every = 1000
    c.train.eval_batch_size = 512
    c.train.early_stop.target = 0.99
    return overrides.apply(c, arg, ALIASES)
