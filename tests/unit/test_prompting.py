"""A suite's prompt rendered for one row, and its placeholders checked against the dataset."""

from __future__ import annotations

import pytest

from evalflow.config import Prompt
from evalflow.errors import ConfigError
from evalflow.prompting import check_prompt, placeholders, render_messages


def test_placeholders_are_the_named_fields_of_the_template() -> None:
    assert placeholders("{question} in {unit}? {{literal}}") == {"question", "unit"}
    assert placeholders("no fields") == set()


def test_a_placeholder_that_is_not_an_input_field_is_named() -> None:
    prompt = Prompt(user="{question} ({hint}, {extra})")
    check_prompt(prompt, ["question", "hint", "extra"])
    with pytest.raises(ConfigError, match=r"prompt\.user uses extra, hint, which are not input"):
        check_prompt(prompt, ["question"])


def test_system_then_examples_as_turns_then_the_row() -> None:
    prompt = Prompt(
        system="Answer with one word.",
        examples=[("What is 2 plus 2?", "4"), ("Capital of Italy?", "Rome")],
        user="{question} ({unit})",
    )
    assert render_messages(prompt, {"question": "How far?", "unit": "km"}) == [
        {"role": "system", "content": "Answer with one word."},
        {"role": "user", "content": "What is 2 plus 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome"},
        {"role": "user", "content": "How far? (km)"},
    ]


def test_without_system_or_examples_only_the_row_is_sent() -> None:
    messages = render_messages(Prompt(), {"question": "Why {braces}?"})
    assert messages == [{"role": "user", "content": "Why {braces}?"}]
