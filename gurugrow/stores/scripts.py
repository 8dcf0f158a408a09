"""The stores' Lua scripts: each in its own ``.lua`` file in this folder, loaded by name."""

from __future__ import annotations

from importlib.resources import files


def load_script(name: str) -> str:
    """The source of ``gurugrow/stores/<name>.lua``."""
    return files("gurugrow.stores").joinpath(f"{name}.lua").read_text(encoding="utf-8")
