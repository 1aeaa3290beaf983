"""YAML the product reads: like ``yaml.safe_load``, but a mapping may not repeat a key.

PyYAML keeps the last of two equal keys, so a second ``content:`` in a policy silently replaced
the first. Every file the product reads goes through :func:`parse_yaml` / :func:`read_yaml`:

    line 40: duplicate key 'content' (first at line 12)

Keys are compared after YAML typing (``1`` and ``0x1`` are the same key, ``1`` and ``'1'`` are
not); a key brought in by a merge (``<<: *base``) may be overridden; the same key in two
mappings is fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

__all__ = ["Duplicate", "DuplicateKeyError", "StrictLoader", "parse_yaml", "read_yaml"]

MERGE_TAG = "tag:yaml.org,2002:merge"
VALUE_TAG = "tag:yaml.org,2002:value"  # the ``=`` key, which PyYAML reads as the string "="


@dataclass(frozen=True)
class Duplicate:
    """A key written a second time in one mapping (lines are 1-based)."""

    key: str
    line: int
    first_line: int

    @property
    def message(self) -> str:
        return f"duplicate key {self.key!r} (first at line {self.first_line})"

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class DuplicateKeyError(ConstructorError):
    """The document repeats a key in a mapping; ``duplicates`` lists every one, by line."""

    def __init__(self, source: str, duplicates: list[Duplicate], mark: yaml.Mark) -> None:
        self.source = source
        self.duplicates = duplicates
        super().__init__(problem=duplicates[0].message, problem_mark=mark)

    def __str__(self) -> str:
        return f"{self.source}: " + "; ".join(str(d) for d in self.duplicates)


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that raises :class:`DuplicateKeyError` for a repeated key."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._seen_nodes: set[Node] = set()
        self._duplicates: list[tuple[Duplicate, yaml.Mark]] = []

    def flatten_mapping(self, node: MappingNode) -> None:
        # PyYAML calls this before it builds a mapping and before it folds ``<<`` merges into
        # ``node.value``: the first call sees the keys as written
        if node not in self._seen_nodes:
            self._seen_nodes.add(node)
            self._duplicates += _repeated_keys(self, node)
        super().flatten_mapping(node)

    def construct_document(self, node: Node) -> Any:
        data = super().construct_document(node)
        found = sorted(self._duplicates, key=lambda d: (d[0].line, d[0].first_line))
        self._seen_nodes, self._duplicates = set(), []
        if found:
            raise DuplicateKeyError(self.name, [d for d, _ in found], found[0][1])
        return data


def _repeated_keys(loader: StrictLoader, node: MappingNode) -> list[tuple[Duplicate, yaml.Mark]]:
    """The keys of ``node`` equal (once typed) to an earlier key of ``node``; merges skipped."""
    first: dict[Any, Node] = {}
    found = []
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG or not isinstance(key_node, ScalarNode):
            continue  # a non-scalar key is unhashable: PyYAML refuses it itself
        key = "=" if key_node.tag == VALUE_TAG else loader.construct_object(key_node)
        earlier = first.setdefault(key, key_node)
        if earlier is not key_node:
            line, first_line = key_node.start_mark.line + 1, earlier.start_mark.line + 1
            found.append((Duplicate(str(key_node.value), line, first_line), key_node.start_mark))
    return found


def parse_yaml(text: str, source: str = "<yaml>") -> Any:
    """The data in YAML ``text``; errors (:class:`DuplicateKeyError` too) name ``source``."""
    loader = StrictLoader(text)
    loader.name = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: Path) -> Any:
    """The data in the YAML file at ``path``; errors name the file."""
    return parse_yaml(path.read_text(encoding="utf-8"), str(path))
