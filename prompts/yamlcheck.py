"""Validate YAML text against a pydantic model with errors that name their line.

Used for the policy file, journeys and eval suites: a person edits them by hand, so "line 12:
escalation.rules.0.queue: Input should be 'sales' or 'support'" beats a stack trace. A key
written twice in one mapping is refused ("line 40: duplicate key 'content' (first at line 12)").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from prompts.yamlfile import DuplicateKeyError, StrictLoader, parse_yaml

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class YamlInvalid(ValueError):
    """The file is not valid; every problem names its line where it has one."""

    kind = "file"

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: invalid {self.kind}\n" + "\n".join(f"  {p}" for p in problems)
        )


def _node_at(node: yaml.Node, loc: tuple[int | str, ...]) -> yaml.Node:
    """The YAML node a pydantic error location points at (as deep as the file goes)."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(
                (v for k, v in node.value if getattr(k, "value", None) == part), None
            )
            if found is None:
                return node
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def validate_yaml(
    text: str,
    model: type[M],
    source: str,
    *,
    error: type[YamlInvalid] = YamlInvalid,
    extra: dict[str, Any] | None = None,
) -> M:
    """``model`` from YAML ``text``; raises ``error`` with line-numbered problems."""
    try:
        root = yaml.compose(text, Loader=StrictLoader)
        data: Any = parse_yaml(text, source)
    except DuplicateKeyError as exc:
        raise error(source, [Problem(d.line, d.message) for d in exc.duplicates]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(source, [Problem(line, f"not valid YAML: {problem}")]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(source, [Problem(1, "the file must be a mapping")])
    try:
        return model.model_validate({**data, **(extra or {})})
    except ValidationError as exc:
        found: dict[tuple[int | None, str], list[str]] = {}
        for err in exc.errors():
            # a union reports once per member (loc ends in e.g. "literal['auto']"): merge them
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            line = _node_at(root, loc).start_mark.line + 1 if root is not None else None
            where = ".".join(str(p) for p in loc) or "file"
            found.setdefault((line, where), []).append(err["msg"])
        problems = [
            Problem(line, f"{where}: {' or '.join(dict.fromkeys(msgs))}")
            for (line, where), msgs in found.items()
        ]
        raise error(source, problems) from exc


def read_source(path: Path, error: type[YamlInvalid]) -> str:
    """A YAML file's text, or ``error`` saying the file cannot be read (no line number)."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(str(path), [Problem(None, f"cannot read the file: {exc}")]) from exc
