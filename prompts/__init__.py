"""Prompts, templates and labelled examples, kept as files and rendered in one place.

A template declares its placeholders as ``{name}``; :func:`render` fails loudly when a value is
missing or unexpected, so a renamed field never silently yields a broken prompt.
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PROMPTS_DIR = Path(__file__).resolve().parent


class PromptError(ValueError):
    """A template and the values given to it do not match."""


def path(name: str) -> Path:
    return PROMPTS_DIR / name


@lru_cache
def load_yaml(name: str) -> Any:
    with path(name).open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@lru_cache
def load_text(name: str) -> str:
    return path(name).read_text(encoding="utf-8")


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def render(template: str, /, **values: Any) -> str:
    """Fill ``template``'s ``{placeholders}``; every one must be given, and nothing more."""
    wanted = placeholders(template)
    missing = wanted - values.keys()
    extra = values.keys() - wanted
    if missing or extra:
        raise PromptError(
            f"template placeholders {sorted(wanted)}; missing {sorted(missing)}, "
            f"unexpected {sorted(extra)}"
        )
    return template.format(**values)


def render_file(name: str, /, **values: Any) -> str:
    return render(load_text(name), **values)
