"""The training stack: the typed Experiment and its one ConfigDict translation, the Task protocol
and its tasks (mqar, lm, uea), the one loop, train step, sharding, optimizer, checkpoints,
metrics, sweeps."""
