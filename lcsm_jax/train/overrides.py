"""Parsing of `--config configs/x.py:key=value,key=value` arguments into a ConfigDict."""

from __future__ import annotations

import ast


def apply(config, arg: str | None, aliases: dict[str, str]):
    """Sets each `key=value` of `arg` on `config`; keys are aliases or dotted config paths (a
    path must exist, except a new key under a `mixer_options` node)."""
    if not arg:
        return config
    for item in arg.split(","):
        if "=" not in item:
            raise ValueError(f"config override {item!r} is not of the form key=value")
        key, raw = (part.strip() for part in item.split("=", 1))
        path = aliases.get(key, key)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # a bare string such as model=gla
        node = config
        *parents, leaf = path.split(".")
        try:
            for parent in parents:
                node = node[parent]
            # mixer_options are free-form: the catalogue validates them for the chosen mixer.
            if leaf not in node and parents[-1:] != ["mixer_options"]:
                raise KeyError(leaf)
        except KeyError:
            valid = sorted(aliases) + ["<any dotted config path>"]
            raise ValueError(
                f"unknown config override {key!r}; valid: {', '.join(valid)}"
            ) from None
        current = node.get(leaf)
        if isinstance(current, float) and isinstance(value, int):
            value = float(value)
        node[leaf] = value
    return config
