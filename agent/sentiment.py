"""How the customer feels, read the way a support lead would.

VADER (``vaderSentiment``, a maintained lexicon with rules for negation, "but", degree words,
capitals and exclamation marks) gives the base score, with a few product words it would read
as mood made neutral ("the Growth plan", "a free trial", "Pro support"). On top of it, what a
lexicon of single words cannot see in a support inbox:

- **frustration phrases**: "thanks for nothing", "waste of time", "are you kidding";
- **repeat-contact language**: "third time", "again", "still not", "how many times", "I already
  wrote" — the customer saying this is not their first contact, which also feeds the policy's
  repeat-contact rule (:func:`claimed_contacts`);
- **shouting**: a message mostly in capitals, or "!!", sharpens a complaint; on its own
  ("THANK YOU!!") it sharpens whatever mood is there;
- **our escalation terms** (lawyer, scam, chargeback…): negative, whatever else is said.

Every marker found is returned (``thanks_for_nothing``, ``repeat_contact_3``, ``shouting``…),
and the decision records them as ``sentiment:<marker>`` reasons: it says why it read a message
as negative.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from core.domain import Sentiment

#: VADER words that are product or problem vocabulary here, not mood: "the Growth plan", "a
#: free trial", and a problem reported calmly ("the webhooks fail with 401 errors", "the
#: template was rejected", "access denied") is a question for the knowledge base, not an upset
#: customer
NOT_MOOD = ("growth", "free", "pro", "support", "supports", "supported", "help", "credit",
            "credits", "please", "sorry", "want", "wants", "fit", "fits", "like", "yes", "ok",
            "okay", "sure", "trial", "share", "save", "saves", "united", "easy", "fix", "fixed",
            "fail", "fails", "failed", "failing", "failure", "error", "errors", "problem",
            "problems", "issue", "issues", "bug", "bugs", "broken", "crash", "crashes",
            "crashed", "crashing", "wrong", "lost", "missing", "block", "blocked", "stuck",
            "reject", "rejects", "rejected", "rejecting", "deny", "denied")
#: mood words VADER misses or reads too mildly (its scale: -4 to 4)
MOOD_WORDS = {"unusable": -2.5, "ignored": -1.8, "ghosted": -2.0, "nightmare": -2.7,
              "joke": -1.0}
#: a problem: "again" or "still" beside one is a repeat contact
_PROBLEM = re.compile(
    r"\b(fail\w*|errors?|broken|bugs?|crash\w*|not working|doesn'?t work|does not work|"
    r"won'?t (load|work|open|sync)|down|outage|wrong|missing|stuck|blocked|reject\w*|denied|"
    r"problem|issue)\b",
    re.I)

_FRUSTRATION = {
    "thanks_for_nothing": r"thanks? (you )?for nothing|no thanks to you",
    "waste": r"(a )?waste of (my )?(time|money)",
    "disbelief": r"are you (kidding|serious|joking)|seriously\?|you'?ve got to be kidding",
    "fed_up": r"fed up|sick (and tired )?of|had enough|enough is enough|can'?t believe",
    "not_resolved": r"still (not|no|isn'?t|doesn'?t|don'?t|can'?t|broken|waiting|failing|"
                    r"down|the same|nothing)|nobody (has )?(answered|replied|helped|got back)|"
                    r"no one (has )?(answered|replied|helped|got back)|never (got|heard) back",
}
_REPEAT = {
    3: r"\b(third|3rd|fourth|4th|fifth|5th|sixth|tenth|umpteenth|\d+(st|nd|rd|th)) time\b|"
       r"\bhow many (more )?times\b|\bover and over\b|\b(three|four|five|several|many|multiple)"
       r" times (already|now|before)\b",
    2: r"\b(second|2nd) time\b|\bagain\b|\bstill\b|\balready "
       r"(told|asked|wrote|written|emailed|called|contacted|reported|explained|sent)\b|"
       r"\bevery (single )?time I\b|"
       r"\bfor (days|weeks|months) now\b|\bas I said\b|\blike I said\b",
}
#: terms the escalation policy also routes on: negative whatever else the message says
_ESCALATION = (r"\b(lawyer|attorney|solicitor|lawsuit|legal action|sue|court|ombudsman|"
               r"chargeback|regulator|scam|fraud)\b")

_FRUSTRATION_RE = {name: re.compile(rf"\b(?:{p})", re.I) for name, p in _FRUSTRATION.items()}
_REPEAT_RE = {n: re.compile(p, re.I) for n, p in _REPEAT.items()}
_ESCALATION_RE = re.compile(_ESCALATION, re.I)
_LETTERS = re.compile(r"[^\W\d_]")

#: the score at or under which a message reads negative, at or over which positive
NEGATIVE_AT = -0.2
POSITIVE_AT = 0.3


@dataclass(frozen=True)
class Mood:
    """The reading of one message: its label, the score behind it, and why."""

    sentiment: Sentiment
    score: float
    markers: list[str] = field(default_factory=list)
    #: contacts the customer says this is (1: nothing said), see :func:`claimed_contacts`
    claimed_contacts: int = 1


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    analyzer = SentimentIntensityAnalyzer()
    for word in NOT_MOOD:
        analyzer.lexicon.pop(word, None)
    analyzer.lexicon.update(MOOD_WORDS)
    return analyzer


def claimed_contacts(text: str) -> int:
    """How many contacts the customer says this one is: 3 for "third time" or "how many
    times", 2 for "again", "still", "I already wrote"; 1 when they say nothing of it."""
    for count in sorted(_REPEAT_RE, reverse=True):
        if _REPEAT_RE[count].search(text):
            return count
    return 1


def shouting(text: str) -> bool:
    """Mostly capitals (at least 10 letters, 70% of them upper case), or "!!"."""
    if "!!" in text:
        return True
    letters = _LETTERS.findall(text)
    return len(letters) >= 10 and sum(c.isupper() for c in letters) >= 0.7 * len(letters)


def mood_of(text: str) -> Mood:
    """The customer's mood in ``text``: VADER's compound score, moved by the markers."""
    base = score = _analyzer().polarity_scores(text)["compound"]
    markers = [name for name, pattern in _FRUSTRATION_RE.items() if pattern.search(text)]
    # each sign of frustration cancels the polite words around it and pulls the reading down
    for _ in markers:
        score = min(score, 0.0) - 0.3
    contacts = claimed_contacts(text)
    problem = bool(_PROBLEM.search(text))
    # "third time" is frustration on its own; "again" or "still" only beside a problem
    # ("send the invoice again", "is the trial still on?" are not complaints)
    if contacts >= 3 or (contacts == 2 and (base < 0 or problem)):
        markers.append(f"repeat_contact_{contacts}")
        score = min(score, 0.0) - 0.3
    if shouting(text):
        markers.append("shouting")
        # shouting sharpens a complaint; it does not make a question or thanks negative
        if score < 0 or len(markers) > 1 or problem:
            score -= 0.3
    if _ESCALATION_RE.search(text):
        markers.append("escalation_term")
        score = min(score, -0.5)
    score = max(-1.0, min(1.0, score))
    if score <= NEGATIVE_AT:
        label: Sentiment = "negative"
    elif score >= POSITIVE_AT:
        label = "positive"
    else:
        label = "neutral"
    return Mood(sentiment=label, score=round(score, 3), markers=markers,
                claimed_contacts=contacts)
