"""How hard a study trains its cells, per task: `smoke` (every cell a few steps: a test),
`cpu` (what the project's 2-core CPU finishes in a few hours per study) and `paper` (the LCSM
paper's setting, SPEC §4, for accelerators).

    python study.py --study NAME --task mqar|lm|uea --budget smoke|cpu|paper --out DIR
"""

from lcsm_jax.train.study import Budget

OPT = "model.mixer_options."
_SMALL_MQAR = {
    "d_model": 32,
    "layers": 1,
    "vocab": 128,
    "batch": 8,
    "data.num_train": 256,
    "data.num_test": 32,
    "optim.warmup_steps": 0,
    "train.eval_every": 1000,
    "train.log_every": 1,
    "train.async_checkpoints": False,
    OPT + "expand_dim": 16,
    # The sequential backend compiles in a third of the chunked one's time: a smoke run is
    # mostly compilation.
    OPT + "backend": "reference",
}
PAPER_LRS = (1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2)

BUDGETS = {
    "mqar": {
        "smoke": Budget(
            "smoke", "mqar.py", {**_SMALL_MQAR, "steps": 2}, lrs=(1e-2,), slices=((32, 2),)
        ),
        "cpu": Budget(
            "cpu",
            "mqar.py",
            {"d_model": 64, "steps": 1000, "conv": 4, OPT + "expand_dim": 64},
            lrs=(3e-3, 1e-2),
            seeds=(0, 1),
            slices=((64, 4),),
            note=(
                "CPU setting: configs/mqar.py (vocabulary 512, 50k training examples, batch 64, "
                "100 warmup steps, cosine decay, AdamW wd 0.1, early stop at 0.99), d_model 64, "
                "K = 64, τ = 16, 2 blocks, 1000 steps (1.3 epochs). Each mixer has the causal "
                "short convolution of width 4 in front of it (the paper's bare skeleton has "
                "none: without it recall is learnt far more slowly at this budget, and every "
                "cell would sit near 0.25)."
            ),
        ),
        "paper": Budget(
            "paper",
            "mqar_paper.py",
            {"d_model": 128},
            lrs=PAPER_LRS,
            slices=((32, 2), (64, 4), (128, 8), (256, 16)),
            note=(
                "The paper's setting (configs/mqar_paper.py: vocabulary 8192, 100k/3k examples, "
                "batch 512, 64 epochs, no short convolution, early stop at 0.99) at d_model 128; "
                "the paper's other widths: `--set d_model=32` etc. into another --out."
            ),
        ),
    },
    "lm": {
        "smoke": Budget(
            "smoke",
            "lm.py",
            {
                "d_model": 16,
                "layers": 1,
                "heads": 2,
                "model.channel_mixer": "none",
                "seq_len": 32,
                "batch": 4,
                "steps": 2,
                "tokenizer": "bytes",
                "data.eval_max_windows": 4,
                "optim.warmup_steps": 0,
                "train.async_checkpoints": False,
                OPT + "expand_dim": 8,
            },
            lrs=(3e-3,),
            metric="validation_bits_per_byte",
            maximize=False,
        ),
        "cpu": Budget(
            "cpu",
            "lm.py",
            {},
            lrs=(3e-3,),
            seeds=(0, 1),
            metric="validation_bits_per_byte",
            maximize=False,
            note=(
                "CPU setting: configs/lm.py's cpu size on the KJV Bible (4 blocks of width 128, "
                "4 heads, GLU channel mixer, 128-token windows, batch 16, BPE 4096, 400 steps, "
                "lr 3e-3); metric: validation bits per byte."
            ),
        ),
        "paper": Budget(
            "paper",
            "lm.py:size=paper",
            {},
            lrs=(1e-3,),
            metric="validation_bits_per_byte",
            maximize=False,
            note="The paper's LM shape (configs/lm.py:size=paper); pass --set corpus=wikitext-103.",
        ),
    },
    "uea": {
        "smoke": Budget(
            "smoke",
            "uea.py",
            {"d_model": 16, "steps": 2, "train.eval_every": 1000},
            lrs=(1e-3,),
        ),
        "cpu": Budget(
            "cpu",
            "uea.py",
            {"dataset": "JapaneseVowels", "d_model": 64},
            lrs=(1e-3,),
            seeds=(0, 1, 2),
            note=(
                "The set aeon ships that the command names (JapaneseVowels unless --set "
                "dataset=NAME), configs/uea.py's schedule (100 epochs, Adam, batch 8 unless "
                "the config lists the set), width 64, 2 blocks."
            ),
        ),
        "paper": Budget(
            "paper",
            "uea.py",
            {"d_model": 64},
            lrs=(1e-4, 1e-3),
            seeds=(0, 1, 2, 3, 4),
            note="Five seeds per cell; choose the set with --set dataset=NAME.",
        ),
    },
}
