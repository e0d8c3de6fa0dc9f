"""Checkpoints through an orbax `CheckpointManager`: async saves, keep the last N, exact restore.

A checkpoint holds the train state (params, optimizer state, step) and a JSON `meta` record (the
config and the data-iterator state). Orbax writes each step to a temporary directory and renames
it when complete, so a run killed mid-save leaves the previous checkpoints intact; nothing here ever
deletes a checkpoint except orbax's own `max_to_keep` rotation of finished ones.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint directory that is missing, empty or cannot be restored."""


class Checkpointer:
    def __init__(self, directory, *, keep: int = 3, use_async: bool = True, create: bool = True):
        self.directory = Path(directory).absolute()
        if not create and not self.directory.is_dir():
            raise CheckpointError(f"checkpoint directory {self.directory} does not exist")
        if keep < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1, got {keep}")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=use_async, create=create
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state, meta: dict) -> None:
        # Wait for the previous async save first: the manager must never skip a requested save.
        self.manager.wait_until_finished()
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )

    def _resolve(self, step: int | None) -> int:
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise CheckpointError(f"no checkpoint found in {self.directory}")
            return max(steps)
        if step not in steps:
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory}; have {steps}"
            )
        return step

    def _restore(self, step: int, **items):
        try:
            return self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as err:  # orbax raises many types for unreadable data
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory} could not be restored "
                f"({type(err).__name__}: {err}); it was left untouched"
            ) from err

    def meta(self, step: int | None = None) -> dict:
        """The JSON record of `step` (default: the latest) alone, without reading the state."""
        step = self._resolve(step)
        return self._restore(step, meta=ocp.args.JsonRestore())["meta"]

    def restore(self, abstract_state, step: int | None = None):
        """(state, meta) at `step` (default: the latest). `abstract_state` carries shardings."""
        step = self._resolve(step)
        restored = self._restore(
            step, state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
        )
        return restored["state"], restored["meta"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree, shardings):
    """ShapeDtypeStructs with shardings: the restore target for orbax."""
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )
