"""Test-wide JAX settings: several fake CPU devices, strict rank promotion, and (on CPU) XLA's
optimisation passes off and a compilation cache shared by the run's processes.

The suite compiles hundreds of small programs and runs most of them once, so on CPU XLA's
optimisation passes cost more than they save: with them off (`jax_disable_most_optimizations`)
the default suite takes about 40% less time on the 2-core development machine (tests/eos/
test_grad.py, tests/train/test_loop.py and tests/layers/test_grid.py: 313 s against 520 s on one
core). `LCSM_TEST_OPTIMIZE=1` keeps the passes (as users' runs have them; `make test-slow` sets
it); on GPU and TPU they stay on.

Many tests build the same program more than once (fresh closures of one function, the training
scripts started as subprocesses to be killed and resumed), so the run's processes share JAX's
persistent compilation cache in a temporary directory, removed when the run ends (a directory
the user set with JAX_COMPILATION_CACHE_DIR is used, and kept, instead). The settings are made as
environment variables, so the subprocesses the tests start inherit them.
"""

import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))
_CACHE = os.path.join(tempfile.gettempdir(), f"lcsm_jax_test_xla_cache_{_RUN}")

if jax.default_backend() == "cpu":
    if os.environ.get("LCSM_TEST_OPTIMIZE") != "1":
        os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
    jax.config.update(
        "jax_disable_most_optimizations", os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS") == "1"
    )
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")),
    )


def pytest_sessionfinish(session):
    """The controller (or a run without workers) removes the run's own cache directory."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        shutil.rmtree(_CACHE, ignore_errors=True)
