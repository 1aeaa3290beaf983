"""Prompts, templates and labelled examples, kept as files and rendered in one place.

A template declares its placeholders as ``{name}``; :func:`render` fails loudly when a value is
missing or unexpected, so a renamed field never silently yields a broken prompt.
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path
from typing import Any

from prompts.yamlfile import DuplicateKeyError, StrictLoader, parse_yaml, read_yaml

__all__ = [
    "PROMPTS_DIR", "DuplicateKeyError", "PromptError", "StrictLoader", "load_text", "load_yaml",
    "parse_yaml", "path", "placeholders", "read_yaml", "render", "render_file",
]

PROMPTS_DIR = Path(__file__).resolve().parent


class PromptError(ValueError):
    """A template and the values given to it do not match."""


def path(name: str) -> Path:
    return PROMPTS_DIR / name


@lru_cache
def load_yaml(name: str) -> Any:
    """A YAML file here (or at an absolute path); a repeated key is refused, naming the file."""
    return read_yaml(path(name))


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
