"""The language a customer writes in, read offline, and what the bot says when it cannot answer
in it.

The language comes from ``py3langid`` (a naive Bayes model shipped with the package: no
download, about 0.1 ms a message), limited to the languages in ``prompts/languages.yaml`` and
trusted only when it is sure (:data:`MIN_PROBABILITY`) on a message of a few words: "ok", "Hi"
or "agent" stay in the company's language. A request for a person is recognised in each
language by the file's phrases, whether or not the detector was sure ("una persona, por
favor"): it wins over the intent classifier's examples, which are English. In English too the
file's phrases for it win over the topic the request is about ("I need a real person about my
invoice" asks for a person; the examples' nearest neighbours are billing's).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from prompts import load_yaml

#: the language the company (the templates, the knowledge base) writes in
DEFAULT_LANGUAGE = "en"
#: the detector's normalised probability a language needs to be believed: at 0.9 "Quanto custa
#: o plano Growth por mês?" (Portuguese, 0.86) was answered in English; no message of the
#: intents' examples, the labelled bench, the eval suites or the demo data in English is read
#: as another language at 0.75 or more
MIN_PROBABILITY = 0.8
#: words a message needs before its language is guessed at all
MIN_WORDS = 2

_WORD = re.compile(r"[^\W\d_]{2,}")


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    #: what the rules brain says, in this language, when it hands the customer to a person
    handover: str
    human_request: tuple[re.Pattern[str], ...]
    #: what the grounding rule says instead of an unsupported reply in this language: it
    #: cannot confirm that, and offers a person
    unsure: str = ""


def fold(text: str) -> str:
    """Lower case without accents or typographic apostrophes: "Atención" and "atencion", "I’d"
    and "I'd" read the same."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().replace("\u2019", "'"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _phrases(patterns: list[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(rf"\b(?:{fold(p)})\b") for p in patterns)


@lru_cache(maxsize=1)
def languages() -> dict[str, Language]:
    """``prompts/languages.yaml``: the languages recognised beyond the default one."""
    data: dict[str, Any] = load_yaml("languages.yaml")["languages"]
    return {
        code: Language(code=code, name=spec["name"], handover=spec["handover"],
                       human_request=_phrases(spec["human_request"]),
                       unsure=spec.get("unsure", ""))
        for code, spec in data.items()
    }


@lru_cache(maxsize=1)
def _default_human_request() -> tuple[re.Pattern[str], ...]:
    """The phrases that ask for a person in the company's language (``default`` in the file)."""
    return _phrases(load_yaml("languages.yaml")["default"]["human_request"])


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages([DEFAULT_LANGUAGE, *languages()])
    return identifier


def warm_up() -> None:
    """Load the detector's model (about half a second) before the first message needs it."""
    _identifier()


def language_of(text: str) -> str:
    """The message's language code, or :data:`DEFAULT_LANGUAGE` when it is too short to tell or
    the detector is unsure."""
    if len(_WORD.findall(text)) < MIN_WORDS:
        return DEFAULT_LANGUAGE
    code, probability = _identifier().classify(text)
    return str(code) if probability >= MIN_PROBABILITY else DEFAULT_LANGUAGE


def human_request_in(text: str) -> str | None:
    """The language whose phrase for "I want a person" the message uses, if any
    (:data:`DEFAULT_LANGUAGE` for the company's own)."""
    folded = fold(text)
    for code, language in languages().items():
        if any(p.search(folded) for p in language.human_request):
            return code
    if any(p.search(folded) for p in _default_human_request()):
        return DEFAULT_LANGUAGE
    return None
