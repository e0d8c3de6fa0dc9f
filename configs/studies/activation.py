"""LCSM paper, activation study: t_type 0..7 on e and s, with e, o and s data-dependent.

python study.py --study activation --task mqar --budget cpu --out docs/studies/mqar
"""

from lcsm_jax.train.study import Cell, Study

OPT = "model.mixer_options."
NAMES = ("identity", "ReLU", "sigmoid", "1+ELU", "SiLU", "ELU", "ReLU²", "x²")
STUDY = Study(
    name="activation",
    title="LCSM activation on e and s: t_type 0..7 (e, o, s data-dependent)",
    claim="The paper: activations help (identity is not the best choice).",
    common={"model": "lcsm"},
    cells=tuple(
        Cell(f"t_type {t}: {name}", {OPT + "t_type": t}, "none" if t == 0 else "activation")
        for t, name in enumerate(NAMES)
    ),
)
