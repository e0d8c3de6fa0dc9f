"""Test-wide JAX settings: several fake CPU devices, strict rank promotion, and (on CPU) XLA's
optimisation passes off.

The suite compiles hundreds of small programs and runs most of them once, so on CPU XLA's
optimisation passes cost more than they save: with them off (`jax_disable_most_optimizations`)
the default suite takes about 40% less time on the 2-core development machine (tests/eos/
test_grad.py, tests/train/test_loop.py and tests/layers/test_grid.py: 313 s against 520 s on one
core). The environment variable is set, not only the config, so the training scripts the tests
start as subprocesses run the same way. `LCSM_TEST_OPTIMIZE=1` keeps the passes (as users' runs
have them; `make test-slow` sets it); on GPU and TPU they stay on.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

if os.environ.get("LCSM_TEST_OPTIMIZE") != "1" and jax.default_backend() == "cpu":
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    jax.config.update(
        "jax_disable_most_optimizations", os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] == "1"
    )
