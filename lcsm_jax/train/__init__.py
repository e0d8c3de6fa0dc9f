"""The training stack: sharding rules, optimizer, pure train step, checkpoints, metrics, loop."""
