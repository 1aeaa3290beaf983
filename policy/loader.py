"""Loading the policy file: YAML → :class:`Policy`, errors that name the line, hot reload.

    PolicyError            the file cannot be used; ``problems`` lists (line, message)
    PolicyProvider.get()   the policy in force; re-reads the file when it changed on disk and
                           keeps the last valid policy when the new one is invalid
"""

from __future__ import annotations

import hashlib
import logging
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from policy.model import Policy
from prompts.yamlcheck import Problem, YamlInvalid, validate_yaml

__all__ = ["PolicyError", "PolicyProvider", "Problem", "load_policy", "parse_policy"]

log = logging.getLogger(__name__)


def default_policy_path() -> Path:
    return Path(str(resources.files("policy").joinpath("default.yaml")))


#: Sections every policy file must spell out (an empty or truncated file is refused).
REQUIRED_SECTIONS = ("contact", "escalation", "content")


class PolicyError(YamlInvalid):
    """The policy file is not valid; every problem names its line where it has one."""

    kind = "policy"


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML text; raises :class:`PolicyError` naming lines."""
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    policy = validate_yaml(text, Policy, source, error=PolicyError, extra={"version": version})
    # a half-written save must not silently drop caps or escalation rules
    absent = [s for s in REQUIRED_SECTIONS if s not in policy.model_fields_set]
    if absent:
        raise PolicyError(source, [Problem(1, f"missing sections: {', '.join(absent)}")])
    return policy


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
        self._stamp: tuple[int, int] | None = self._stat()
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
                if self._stat_or_none() != self._stamp:
                    self.reload()
            except PolicyError:
                pass  # reload() recorded it; the last valid policy stays in force
        return self._policy

    def _stat_or_none(self) -> tuple[int, int] | None:
        try:
            return self._stat()
        except OSError:
            return None

    def reload(self) -> Policy:
        """Re-read the file now. Raises :class:`PolicyError`; the old policy stays in force."""
        with self._lock:
            stamp = self._stat_or_none()  # before reading: a later save is seen next time
            try:
                policy = load_policy(self.path)
            except PolicyError as exc:
                self.last_error = exc
                self._stamp = stamp
                log.error("policy reload refused, keeping version %s: %s",
                          self._policy.version, exc)
                raise
            if policy.version != self._policy.version:
                log.info("policy reloaded: %s → %s", self._policy.version, policy.version)
            self._policy, self._stamp, self.last_error = policy, stamp, None
            return policy
