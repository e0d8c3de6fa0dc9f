"""LCSM paper, τ study: the temperature of o = sigmoid(z)^(1/τ) (o_type 1, e and s
data-dependent); larger τ keeps o closer to 1 (longer memory).

    python study.py --study tau --task mqar --budget cpu --out docs/studies/mqar
"""

from lcsm_jax.train.study import Cell, Study

OPT = "model.mixer_options."
STUDY = Study(
    name="tau",
    title="LCSM τ: o = sigmoid(W x)^(1/τ), τ in 1..64",
    claim="The paper sweeps τ in {1, 2, 4, 8, 16, 32, 64} and uses τ = 16.",
    common={"model": "lcsm"},
    cells=tuple(Cell(f"tau {t}", {OPT + "tau": t}, "τ") for t in (1, 2, 4, 8, 16, 32, 64)),
)
