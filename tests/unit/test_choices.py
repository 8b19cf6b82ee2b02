"""Multiple choice: the letter read from an answer, targets as letters or text, shuffling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalflow.choices import extract_choice, render_choices, shuffled_order, target_index
from evalflow.config import DatasetSpec, Prompt
from evalflow.dataset import load_rows
from evalflow.errors import DatasetError
from evalflow.prompting import render_row

CHOICES = ("Venus", "Mars", "Jupiter", "Saturn")

# (what a model answered, the letter read: None when it picks no single choice)
FORMS = [
    ("B", "B"),
    ("b", "B"),
    ("(B)", "B"),
    ("[B]", "B"),
    ("B)", "B"),
    ("B.", "B"),
    ("B:", "B"),
    (" B \n", "B"),
    ("**B**", "B"),
    ("`B`", "B"),
    ("B) Mars", "B"),
    ("(B) Mars", "B"),
    ("B. Mars", "B"),
    ("The answer is B.", "B"),
    ("The answer is (B).", "B"),
    ("Answer: B", "B"),
    ("answer: b", None),  # a lower-case letter after other words is not read as a choice
    ("The correct answer is **C**, Jupiter.", "C"),
    ("I think the answer is D", "D"),
    ("Option C", "C"),
    ("I pick (A) because it is closest.", "A"),
    ("Mars", "B"),
    ("mars.", "B"),
    ("It is Jupiter, the largest planet.", "C"),
    ("C is right", "C"),
    ("A mammal", None),  # an article, not the letter A
    ("I don't know.", None),
    ("", None),
    ("E", None),  # no fifth choice
    ("A or B", None),  # two letters: no single choice
    ("Venus or Mars", None),  # two choices named
    ("The answer is Mars", "B"),  # a capital word after "answer is" is not a letter
    ("D) Saturn\nBecause of its rings.", "D"),
]


@pytest.mark.parametrize(("output", "expected"), FORMS)
def test_the_letter_an_answer_picks(output: str, expected: str | None) -> None:
    assert extract_choice(output, CHOICES) == expected


def test_the_table_has_at_least_20_forms() -> None:
    assert len(FORMS) >= 20


def test_a_choice_inside_a_longer_one_gives_way() -> None:
    choices = ("Mars", "Mars and Venus", "Earth")
    assert extract_choice("Mars and Venus", choices) == "B"
    assert extract_choice("Mars", choices) == "A"


def test_targets_as_letters_or_text() -> None:
    assert target_index("C", CHOICES) == 2
    assert target_index("(c)", CHOICES) == 2
    assert target_index("Saturn", CHOICES) == 3
    assert target_index(" saturn. ", CHOICES) == 3
    assert target_index("Pluto", CHOICES) is None
    assert target_index("F", CHOICES) is None


def test_shuffling_depends_only_on_seed_and_row() -> None:
    first = shuffled_order(7, "row-1", 4)
    assert sorted(first) == [0, 1, 2, 3]
    assert shuffled_order(7, "row-1", 4) == first
    orders = {tuple(shuffled_order(7, f"row-{i}", 4)) for i in range(50)}
    assert len(orders) > 10  # rows are shuffled differently
    assert render_choices(["x", "y"]) == "A) x\nB) y"


def _write(tmp_path: Path, rows: list[dict[str, object]]) -> str:
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_rows_are_shuffled_and_the_target_follows_its_choice(tmp_path: Path) -> None:
    data = [
        {"id": f"r{i}", "question": f"Q{i}?", "choices": list(CHOICES), "answer": answer}
        for i, answer in enumerate(["Mars", "B", "Saturn", "A"] * 5)
    ]
    spec = DatasetSpec(path="mc.jsonl", id_field="id", choices_field="choices", shuffle=3)
    rows = load_rows(_write(tmp_path, data), spec)
    for row, source in zip(rows, data, strict=True):
        right = target_index(source["answer"], CHOICES)
        assert right is not None
        assert row.choices[ord(row.target) - ord("A")] == CHOICES[right]
        assert sorted(row.choices) == sorted(CHOICES)
        assert row.record["choices"] == list(row.choices)
    assert any(row.choices != CHOICES for row in rows)
    again = load_rows(_write(tmp_path, data), spec)
    assert [r.choices for r in again] == [r.choices for r in rows]
    unshuffled = load_rows(_write(tmp_path, data), spec.model_copy(update={"shuffle": None}))
    assert all(r.choices == CHOICES for r in unshuffled)
    assert [r.target for r in unshuffled[:4]] == ["B", "B", "D", "A"]


def test_the_prompt_shows_the_choices_in_place_or_after_the_question(tmp_path: Path) -> None:
    data = [{"id": "r", "question": "Which planet?", "choices": list(CHOICES), "answer": "B"}]
    spec = DatasetSpec(path="mc.jsonl", id_field="id", choices_field="choices")
    (row,) = load_rows(_write(tmp_path, data), spec)
    listed = "A) Venus\nB) Mars\nC) Jupiter\nD) Saturn"
    appended = render_row(Prompt(), row)[-1]["content"]
    assert appended == f"Which planet?\n{listed}"
    placed = render_row(Prompt(user="{choices}\n\nQ: {question}"), row)[-1]["content"]
    assert placed == f"{listed}\n\nQ: Which planet?"


def test_bad_choice_rows_are_named(tmp_path: Path) -> None:
    data = [
        {"id": "a", "question": "Q?", "choices": "red", "answer": "A"},
        {"id": "b", "question": "Q?", "choices": ["red"], "answer": "A"},
        {"id": "c", "question": "Q?", "choices": ["red", "blue"], "answer": "green"},
        {"id": "d", "question": "Q?", "answer": "A"},
    ]
    spec = DatasetSpec(path="mc.jsonl", id_field="id", choices_field="choices")
    with pytest.raises(DatasetError) as error:
        load_rows(_write(tmp_path, data), spec)
    message = str(error.value)
    assert "line 1: field 'choices' is not a list" in message
    assert "line 2: field 'choices' should be a list of 2 to 26 choices" in message
    assert "line 3: target 'green' is neither a letter A-B nor the text of one choice" in message
    assert "line 4: missing field 'choices'" in message
