"""Chat messages for short factual questions, with few-shot examples for base models."""

from __future__ import annotations

QA_EXAMPLES: list[tuple[str, str]] = [
    ("What is the capital of Italy?", "Rome"),
    ("What is 2 plus 2?", "4"),
    ("What color is the sky on a clear day?", "Blue"),
]


def qa_messages(
    question: str, examples: list[tuple[str, str]] | None = None
) -> list[dict[str, str]]:
    """User/assistant turns for each example, then the question as the last user turn."""
    messages: list[dict[str, str]] = []
    for q, a in QA_EXAMPLES if examples is None else examples:
        messages.append({"role": "user", "content": q})
        messages.append({"role": "assistant", "content": a})
    messages.append({"role": "user", "content": question})
    return messages
