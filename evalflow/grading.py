"""A judge's grading request and the strict reading of its grade.

The request is the scorer's template (default: TEMPLATE) filled with the row's fields,
`{input}` (the question as the answering model received it), `{target}`, `{output}` and
`{instructions}` (how to answer: explain, then a last line `GRADE: C` or `GRADE: I`, `GRADE: P`
too when partial credit is allowed, or `GRADE: n` on a scale of 1 to N; or the scorer's own
`instructions`); the instructions follow the template when it does not place them. The reply
is read strictly: its last line starting with `GRADE:` must hold one of the allowed grades,
else the row has no grade (the scorer's error for that row, never a wrong answer).

Plain Python: the simulated endpoint reads requests made from TEMPLATE to play a judge.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

from evalflow.config import ScorerSpec

TEMPLATE = """Grade a submitted answer against the reference answer.

<question>
{input}
</question>
<reference>
{target}
</reference>
<submission>
{output}
</submission>

{instructions}"""

_PASS_FAIL = (
    "Decide whether the submission gives the same answer as the reference. Differences of "
    "wording, spelling, case or extra words that leave the answer unchanged do not matter; "
    "an answer that is missing, different or hedged between several answers is incorrect. "
    "Explain your decision in a sentence or two, then end your reply with a line that reads "
    "exactly {grades}."
)
_SCALE = (
    "Rate how well the submission matches the reference answer on a scale from 1 to {n}, "
    "where 1 means wrong and {n} means fully correct. Explain your rating in a sentence or "
    "two, then end your reply with a line that reads exactly `GRADE: k`, k being a whole "
    "number from 1 to {n}."
)
GRADE_LINE = re.compile(r"^GRADE:[ \t]*(\S*)[ \t]*$")
SPECIAL_FIELDS = ("input", "target", "output", "instructions", "row_id")


def allowed_grades(spec: ScorerSpec) -> dict[str, float]:
    """Grade -> score in 0..1."""
    if spec.mode == "scale":
        n = spec.scale or 2
        return {str(k): (k - 1) / (n - 1) for k in range(1, n + 1)}
    grades = {"C": 1.0, "I": 0.0}
    if spec.partial:
        grades["P"] = 0.5
    return grades


def instructions(spec: ScorerSpec) -> str:
    """How the judge is asked to reply: the scorer's own instructions, else evalflow's."""
    if spec.instructions is not None:
        return spec.instructions
    if spec.mode == "scale":
        return _SCALE.format(n=spec.scale)
    if spec.partial:
        grades = "`GRADE: C` if it is correct, `GRADE: P` if it is partly correct, or `GRADE: I`"
    else:
        grades = "`GRADE: C` if it is correct or `GRADE: I`"
    return _PASS_FAIL.format(grades=grades + " if it is incorrect")


def template_fields(spec: ScorerSpec) -> set[str]:
    """The placeholders of the scorer's template."""
    template = spec.template or TEMPLATE
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def grading_messages(
    spec: ScorerSpec, fields: dict[str, Any], question: str, target: Any, output: str
) -> list[dict[str, str]]:
    """The judge's messages for one answer: system, few-shot turns, then the request."""
    template = spec.template or TEMPLATE
    told = instructions(spec)
    values = {**fields, "input": question, "target": target, "output": output}
    values["instructions"] = told
    text = template.format_map(values)
    if "instructions" not in template_fields(spec):
        text = f"{text}\n\n{told}"
    messages: list[dict[str, str]] = []
    if spec.system:
        messages.append({"role": "system", "content": spec.system})
    for request, reply in spec.examples:
        messages.append({"role": "user", "content": request})
        messages.append({"role": "assistant", "content": reply})
    messages.append({"role": "user", "content": text})
    return messages


@dataclass(frozen=True)
class Grade:
    """A judge's reply read: its grade and score, its explanation, or why it has none."""

    grade: str | None
    score: float | None
    explanation: str
    error: str | None = None


def parse_grade(reply: str | None, spec: ScorerSpec) -> Grade:
    """The grade of a reply: its last line `GRADE: X` (X one of the allowed grades, exactly);
    the explanation is the rest of the reply. No such line, or another grade: no grade."""
    text = (reply or "").strip()
    lines = text.splitlines()
    allowed = allowed_grades(spec)
    for i in range(len(lines) - 1, -1, -1):
        match = GRADE_LINE.match(lines[i].strip())
        if match is None:
            continue
        explanation = "\n".join(lines[:i] + lines[i + 1 :]).strip()
        grade = match.group(1)
        if grade not in allowed:
            return Grade(None, None, explanation, f"grade {grade!r} is not one of {_listed(spec)}")
        return Grade(grade, allowed[grade], explanation)
    return Grade(None, None, text, f"no line `GRADE: X` in the judge's reply ({_listed(spec)})")


def _listed(spec: ScorerSpec) -> str:
    grades = list(allowed_grades(spec))
    return f"1 to {spec.scale}" if spec.mode == "scale" else ", ".join(grades)


# ---- the simulated endpoint's side: reading a request made from TEMPLATE ---------------------

_SECTION = "<{0}>\n(.*?)\n</{0}>"
_SCALE_OF = re.compile(r"on a scale from 1 to (\d+)")


@dataclass(frozen=True)
class GradingRequest:
    """What a request made from the default template asks: the reference, the submission, and
    the grades it allows."""

    reference: str
    submission: str
    scale: int | None
    partial: bool


def read_grading_request(text: str) -> GradingRequest | None:
    """The reference and submission of a grading request made from TEMPLATE, or None when the
    text is not one."""
    if "GRADE:" not in text:
        return None
    parts = {}
    for name in ("reference", "submission"):
        match = re.search(_SECTION.format(name), text, re.DOTALL)
        if match is None:
            return None
        parts[name] = match.group(1)
    scale = _SCALE_OF.search(text)
    return GradingRequest(
        parts["reference"],
        parts["submission"],
        int(scale.group(1)) if scale else None,
        "`GRADE: P`" in text,
    )
