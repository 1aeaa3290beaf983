"""Loading the policy file: YAML → :class:`Policy`, errors that name the line, hot reload.

    PolicyError            the file cannot be used; ``problems`` lists (line, message)
    PolicyProvider.get()   the policy in force; re-reads the file when it changed on disk and
                           keeps the last valid policy when the new one is invalid
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from policy.model import Policy

log = logging.getLogger(__name__)


def default_policy_path() -> Path:
    return Path(str(resources.files("policy").joinpath("default.yaml")))


@dataclass(frozen=True)
class Problem:
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class PolicyError(ValueError):
    """The policy file is not valid; every problem names its line where it has one."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: invalid policy\n" + "\n".join(f"  {p}" for p in problems)
        )


def _node_at(node: yaml.Node, loc: tuple[int | str, ...]) -> yaml.Node:
    """The YAML node a pydantic error location points at (as deep as the file goes)."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(
                (v for k, v in node.value if getattr(k, "value", None) == part),
                None,
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


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML text; raises :class:`PolicyError` naming lines."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, [Problem(line, f"not valid YAML: {problem}")]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(source, [Problem(1, "the policy must be a mapping of sections")])
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    try:
        return Policy.model_validate({**data, "version": version})
    except ValidationError as exc:
        found: dict[tuple[int | None, str], list[str]] = {}
        for err in exc.errors():
            # a union reports once per member (loc ends in e.g. "literal['auto']"): merge them
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            line = _node_at(root, loc).start_mark.line + 1 if root is not None else None
            where = ".".join(str(p) for p in loc) or "policy"
            found.setdefault((line, where), []).append(err["msg"])
        problems = [
            Problem(line, f"{where}: {' or '.join(dict.fromkeys(msgs))}")
            for (line, where), msgs in found.items()
        ]
        raise PolicyError(source, problems) from exc


def load_policy(path: Path | None = None) -> Policy:
    path = path or default_policy_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [Problem(None, f"cannot read the file: {exc}")]) from exc
    return parse_policy(text, str(path))


class PolicyProvider:
    """The policy in force, reloaded when the file changes (checked at most every 0.5 s)."""

    CHECK_EVERY_S = 0.5

    def __init__(self, path: Path | None = None, *, clock: Any = None) -> None:
        import time

        self.path = path or default_policy_path()
        self._monotonic = clock or time.monotonic
        self._lock = threading.Lock()
        self._policy = load_policy(self.path)
        self._stamp = self._stat()
        self._checked = self._monotonic()
        self.last_error: PolicyError | None = None

    def _stat(self) -> tuple[int, int]:
        st = self.path.stat()
        return st.st_mtime_ns, st.st_size

    def get(self) -> Policy:
        now = self._monotonic()
        if now - self._checked >= self.CHECK_EVERY_S:
            self._checked = now
            try:
                if self._stat() != self._stamp:
                    self.reload()
            except (OSError, PolicyError):
                pass  # reload() recorded it; the last valid policy stays in force
        return self._policy

    def reload(self) -> Policy:
        """Re-read the file now. Raises :class:`PolicyError`; the old policy stays in force."""
        with self._lock:
            try:
                stamp = self._stat()
                policy = load_policy(self.path)
            except PolicyError as exc:
                self.last_error = exc
                self._stamp = self._stat() if self.path.exists() else self._stamp
                log.error("policy reload refused, keeping version %s: %s",
                          self._policy.version, exc)
                raise
            if policy.version != self._policy.version:
                log.info("policy reloaded: %s → %s", self._policy.version, policy.version)
            self._policy, self._stamp, self.last_error = policy, stamp, None
            return policy
