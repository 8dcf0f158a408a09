"""A shop's own data files, read and checked at start: the recommended sets
(``RECOMMENDED_SETS_FILE``) and the bot texts (``TEXTS_FILE``), both TOML.

``load_shop_files`` answers what they hold and one ``ConfigProblem`` per file a start
refuses (the same one-line settings errors, naming the set, line or text)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from gurugrow import texts
from gurugrow.basics.catalog import RECOMMENDED_SETS, RecommendedSet, SetsFileError, load_sets
from gurugrow.config import ConfigProblem, Settings


@dataclass(frozen=True)
class ShopFiles:
    sets: dict[str, RecommendedSet] = field(default_factory=lambda: dict(RECOMMENDED_SETS))
    text_overrides: dict[str, object] = field(default_factory=dict)


def load_shop_files(settings: Settings) -> tuple[ShopFiles, list[ConfigProblem]]:
    """The sets and text overrides the settings name, and every problem with them (a
    file with a problem gives the defaults, so the doctor can still run)."""
    problems: list[ConfigProblem] = []
    try:
        sets = load_sets(settings.recommended_sets_file)
    except SetsFileError as e:
        problems.append(ConfigProblem("RECOMMENDED_SETS_FILE", f"RECOMMENDED_SETS_FILE: {e}"))
        sets = dict(RECOMMENDED_SETS)
    overrides: dict[str, object] = {}
    path = settings.texts_file
    if path:
        try:
            overrides = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            problems.append(ConfigProblem("TEXTS_FILE", f"TEXTS_FILE: cannot read {path}: "
                                          f"{type(e).__name__}"))
        except tomllib.TOMLDecodeError as e:
            problems.append(ConfigProblem("TEXTS_FILE", f"TEXTS_FILE: {path} is not valid "
                                          f"TOML: {e}"))
        wrong = texts.override_problems(overrides)
        problems += [ConfigProblem("TEXTS_FILE", f"TEXTS_FILE: {path}: {line}")
                     for line in wrong]
        if wrong:
            overrides = {}
    return ShopFiles(sets, overrides), problems


def texts_toml() -> str:
    """Every current bot text as a TOML file a shop can edit and name in TEXTS_FILE."""
    lines = ["# gurugrow bot texts: edit any, delete the ones you keep as they are, and set",
             "# TEXTS_FILE to this file. {placeholders} are filled in by the service: keep",
             "# them (a text may drop one, never add one its original lacks).", ""]
    tables = []
    for name, value in texts.current_texts().items():
        if isinstance(value, dict):
            tables.append((name, value))
        else:
            lines.append(f"{name} = {_toml_string(value)}")
    for name, table in tables:
        lines += ["", f"[{name}]"]
        lines += [f"{_toml_string(key)} = {_toml_string(text)}" for key, text in table.items()]
    return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string (the same escapes: \" \\ \n \t \uXXXX).
    return json.dumps(text, ensure_ascii=False)
