"""A judge's grading request, and its grade read strictly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from evalflow.config import ScorerSpec
from evalflow.endpoints.sim import submission_is_right
from evalflow.grading import grading_messages, parse_grade, read_grading_request

PASS_FAIL = ScorerSpec(kind="judge", model="judge")
PARTIAL = ScorerSpec(kind="judge", model="judge", partial=True)
SCALE = ScorerSpec(kind="judge", model="judge", scale=5)


@pytest.mark.parametrize(
    ("reply", "spec", "grade", "score"),
    [
        ("It matches.\nGRADE: C", PASS_FAIL, "C", 1.0),
        ("It does not.\nGRADE: I", PASS_FAIL, "I", 0.0),
        ("GRADE: C", PASS_FAIL, "C", 1.0),
        ("  GRADE:C  \n", PASS_FAIL, "C", 1.0),
        ("First GRADE: I\nthen on reflection\nGRADE: C", PASS_FAIL, "C", 1.0),
        ("Half of it.\nGRADE: P", PARTIAL, "P", 0.5),
        ("Close.\nGRADE: 4", SCALE, "4", 0.75),
        ("GRADE: 1", SCALE, "1", 0.0),
        ("GRADE: 5", SCALE, "5", 1.0),
    ],
)
def test_a_grade_line_gives_the_score(
    reply: str, spec: ScorerSpec, grade: str, score: float
) -> None:
    read = parse_grade(reply, spec)
    assert (read.grade, read.score, read.error) == (grade, score, None)


@pytest.mark.parametrize(
    ("reply", "spec"),
    [
        ("The submission is correct.", PASS_FAIL),
        ("GRADE: P", PASS_FAIL),  # partial credit was not allowed
        ("GRADE: c", PASS_FAIL),  # not the exact grade
        ("GRADE: Correct", PASS_FAIL),
        ("Grade: C", PASS_FAIL),
        ("The grade is GRADE: C", PASS_FAIL),  # not a line of its own
        ("GRADE: 6", SCALE),
        ("GRADE: 0", SCALE),
        ("GRADE: 3.5", SCALE),
        ("", PASS_FAIL),
        (None, PASS_FAIL),
    ],
)
def test_anything_else_has_no_grade(reply: str | None, spec: ScorerSpec) -> None:
    read = parse_grade(reply, spec)
    assert read.grade is None and read.score is None and read.error


def test_the_explanation_is_kept_without_the_grade_line() -> None:
    read = parse_grade("Both name Paris.\nSo it is right.\nGRADE: C", PASS_FAIL)
    assert read.explanation == "Both name Paris.\nSo it is right."


def test_the_default_request_carries_question_reference_submission_and_instructions() -> None:
    messages = grading_messages(PASS_FAIL, {"topic": "x"}, "Capital of France?", "Paris", "paris")
    (message,) = messages
    text = message["content"]
    assert "Capital of France?" in text and "`GRADE: C`" in text and "`GRADE: P`" not in text
    request = read_grading_request(text)
    assert request is not None
    assert (request.reference, request.submission, request.scale) == ("Paris", "paris", None)
    scaled = read_grading_request(grading_messages(SCALE, {}, "q", "a", "b")[-1]["content"])
    assert scaled is not None and scaled.scale == 5
    assert read_grading_request("What is the capital of France?") is None


def test_a_template_of_ones_own_with_fields_system_and_examples() -> None:
    spec = ScorerSpec(
        kind="judge",
        model="judge",
        system="You grade answers.",
        examples=[("Is 4 right for 2+2?", "GRADE: C")],
        template="Topic {topic}. Reference {target}; answer {output}.",
    )
    messages = grading_messages(spec, {"topic": "sums"}, "q", "5", "five")
    assert messages[0] == {"role": "system", "content": "You grade answers."}
    assert messages[1:3] == [
        {"role": "user", "content": "Is 4 right for 2+2?"},
        {"role": "assistant", "content": "GRADE: C"},
    ]
    assert messages[3]["content"].startswith("Topic sums. Reference 5; answer five.\n\n")
    assert messages[3]["content"].endswith("`GRADE: I` if it is incorrect.")


def test_judge_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="kind judge needs model"):
        ScorerSpec(kind="judge")
    with pytest.raises(ValidationError, match="only for kind judge"):
        ScorerSpec(kind="exact_match", model="judge")
    with pytest.raises(ValidationError, match="mode scale needs scale"):
        ScorerSpec(kind="judge", model="judge", mode="scale")
    assert SCALE.mode == "scale" and PASS_FAIL.mode == "pass_fail"


def test_the_simulated_judge_holds_a_submission_right_when_it_gives_the_reference() -> None:
    assert submission_is_right("Paris", "Paris.")
    assert submission_is_right("blue whale", "The Blue Whale")
    assert not submission_is_right("4", "I don't know.")
