"""Multiple choice: choices shown as `A) ...`, shuffled per row, and the answer's letter found.

Plain Python (no weave, no pandas): the dataset loader, the prompt and the `choice` scorer use
it, and the tests read it as a table of output forms.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence

LETTERS = string.ascii_uppercase
_PUNCT = str.maketrans("", "", string.punctuation)


def letter(index: int) -> str:
    return LETTERS[index]


def render_choices(choices: Sequence[str]) -> str:
    """`A) first` then `B) second`..., one a line."""
    return "\n".join(f"{letter(i)}) {text}" for i, text in enumerate(choices))


def shuffled_order(seed: int, row_id: str, count: int) -> list[int]:
    """The positions of a row's choices once shuffled: decided only by the seed, the row's id
    and each position (a digest), so a run, a rerun and another machine agree."""

    def key(i: int) -> bytes:
        return hashlib.sha256(f"{seed}\x1f{row_id}\x1f{i}".encode()).digest()

    return sorted(range(count), key=key)


def _norm(text: str) -> str:
    return " ".join(str(text).lower().translate(_PUNCT).split())


def target_index(target: object, choices: Sequence[str]) -> int | None:
    """Which choice a target names: a letter (`B`, `b`, `(B)`), or the text of one choice."""
    text = str(target).strip()
    bare = text.strip("()[]. ")
    if len(bare) == 1 and bare.upper() in LETTERS[: len(choices)]:
        return LETTERS.index(bare.upper())
    wanted = _norm(text)
    found = [i for i, choice in enumerate(choices) if _norm(choice) == wanted]
    return found[0] if len(found) == 1 else None


# An answer that is only a letter: `B`, `b`, `(B)`, `[B]`, `B.`, `B)`, `B:`.
_ALONE = re.compile(r"^[\(\[]?([A-Za-z])[\)\]]?[.:)]?$")
# A letter opening the answer as a label: `B) Mars`, `B. Mars`, `(B) Mars`, `B: Mars`.
_OPENS = re.compile(r"^[\(\[]?([A-Z])(?:[\)\]][.:]?|[.:])\s")
# A letter named as the answer: `The answer is B`, `Answer: (B)`, `option B`, `choice: C`.
_NAMED = re.compile(
    r"(?i:answer(?:\s+is)?|option|choice)\s*(?:is\s*)?[:=]?\s*[\(\[]?([A-Z])\b(?!['\u2019]\w)"
)
# A letter in brackets anywhere: `I pick (C) because`.
_BRACKETED = re.compile(r"[\(\[]([A-Z])[\)\]]")
# A capital letter standing alone: `C is right`. `A` or `I` followed by a lower-case word may
# be a word (an article, a pronoun): never read alone, and a rival to another letter.
_STANDALONE = re.compile(r"(?<![\w'\u2019])([A-Z])(?![\w'\u2019])")
_WORDLIKE = re.compile(r"\s+[a-z]")
_MARKUP = str.maketrans("", "", "*`_")


def _one(found: list[str], valid: str) -> str | None:
    letters = {f.upper() for f in found if f.upper() in valid}
    return letters.pop() if len(letters) == 1 else None


def _by_text(text: str, choices: Sequence[str]) -> str | None:
    """The choice whose text the answer is, or the one choice whose text it contains (a
    choice inside another one's text gives way to the longer one)."""
    said = f" {_norm(text)} "
    if not said.strip():
        return None
    names = [_norm(c) for c in choices]
    exact = [i for i, name in enumerate(names) if name and f" {name} " == said]
    if len(exact) == 1:
        return letter(exact[0])
    inside = [i for i, name in enumerate(names) if name and f" {name} " in said]
    widest = [i for i in inside if not any(i != j and names[i] in names[j] for j in inside)]
    return letter(widest[0]) if len(widest) == 1 else None


def extract_choice(output: str | None, choices: Sequence[str]) -> str | None:
    """The letter an answer picks among `choices`, or None when it picks none or several.

    Tried in order: the answer is a letter (`B`, `(b)`, `B.`), opens with a letter label
    (`B) Mars`), names one (`The answer is B.`, `Answer: (B)`, `option B`), brackets one
    (`I pick (B)`), is or holds one choice's text (`Mars`), or holds one capital letter
    standing alone (`B is right`). Markdown emphasis is ignored (`**B**`)."""
    if output is None or not choices:
        return None
    valid = LETTERS[: len(choices)]
    text = str(output).translate(_MARKUP).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    if match := _ALONE.match(text):
        return _one([match.group(1)], valid)
    if (match := _OPENS.match(lines[0])) and match.group(1) in valid:
        return match.group(1)
    for pattern in (_NAMED, _BRACKETED):
        if (found := _one(pattern.findall(text), valid)) is not None:
            return found
    if (found := _by_text(text, choices)) is not None:
        return found
    return _standalone(text, valid)


def _standalone(text: str, valid: str) -> str | None:
    """The one valid capital letter standing alone in the text, if no other valid letter
    (even a word-like `A` or `I`) stands beside it."""
    sure: list[str] = []
    maybe: list[str] = []
    for match in _STANDALONE.finditer(text):
        wordlike = match.group(1) in "AI" and _WORDLIKE.match(text, match.end())
        (maybe if wordlike else sure).append(match.group(1))
    picked = _one(sure, valid)
    if picked is None or any(m != picked and m in valid for m in maybe):
        return None
    return picked
