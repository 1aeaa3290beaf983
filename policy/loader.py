"""Loading the policy file: YAML → :class:`Policy`, errors that name the line, hot reload.

    PolicyError            the file cannot be used; ``problems`` lists (line, message)
    PolicyProvider.get()   the policy in force; re-reads the file when it changed on disk and
                           keeps the last valid policy when the new one is invalid
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from policy.model import Policy
from prompts.reloading import ReloadingFile
from prompts.yamlcheck import Problem, YamlInvalid, read_source, validate_yaml

__all__ = ["PolicyError", "PolicyProvider", "Problem", "load_policy", "parse_policy"]

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
    return parse_policy(read_source(path, PolicyError), str(path))


class PolicyProvider(ReloadingFile[Policy]):
    """The policy in force, reloaded when the file changes (checked at most every 0.5 s); an
    invalid edit is refused (``last_error``) and the last valid policy stays in force."""

    last_error: PolicyError | None  # type: ignore[assignment]

    def __init__(self, path: Path | None = None, *, clock: Callable[[], float] | None = None
                 ) -> None:
        super().__init__(path or default_policy_path(), load_policy, lambda p: p.version,
                         clock=clock)
