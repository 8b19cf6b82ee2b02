"""Entry point of the local LLM process: llama-cpp-python's OpenAI server plus our chat format.

Gemma 3 270M as shipped is a base model: a chat template without examples gives garbage,
while few-shot question/answer text works. The `qa-fewshot` chat format renders a message
list as that text:

    <system message>

    Q: <user>
    A: <assistant>

    Q: <user>
    A:

and stops at the end of the answer line, so few-shot examples given as user/assistant turns
work as they do with a chat model.
"""

from __future__ import annotations

from typing import Any

CHAT_FORMAT = "qa-fewshot"
STOP = ["\n", "Q:"]


def _content(message: Any) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content).strip()


def render_qa_fewshot(messages: list[Any]) -> str:
    """The plain-text prompt for a list of chat messages."""
    parts: list[str] = []
    for message in messages:
        role, text = message.get("role"), _content(message)
        if role in ("system", "developer"):
            parts.append(f"{text}\n\n")
        elif role == "user":
            parts.append(f"Q: {text}\n")
        elif role == "assistant":
            parts.append(f"A: {text}\n\n")
    return "".join(parts) + "A:"


def register() -> None:
    """Register the chat format with llama-cpp-python (imported here: it is slow to import)."""
    from llama_cpp import llama_chat_format

    def format_qa_fewshot(messages: list[Any], **kwargs: Any) -> Any:
        return llama_chat_format.ChatFormatterResponse(
            prompt=render_qa_fewshot(messages), stop=STOP
        )

    handler = llama_chat_format.chat_formatter_to_chat_completion_handler(format_qa_fewshot)
    llama_chat_format.LlamaChatCompletionHandlerRegistry().register_chat_completion_handler(
        CHAT_FORMAT, handler, overwrite=True
    )


if __name__ == "__main__":
    from evalflow.patches.llama_cpp import disable_weight_repacking

    register()
    disable_weight_repacking()
    from llama_cpp.server.__main__ import main

    main()
