"""The local Weave store keeps a call's inputs and output as JSON text without secrets: its
fast path (most values have nothing to redact and no ref) gives the same text and refs as
redacting the value first."""

from __future__ import annotations

from typing import Any

from evalflow.weave_local.db import dumps
from evalflow.weave_local.redact import redact
from evalflow.weave_local.refs import refs_in
from evalflow.weave_local.server import _stored

SECRETS = ["sk-canary-0123456789", 'quote"and\\slash-secret', "clé-secrète-é"]
REF = "weave:///local/p/object/thing:abc123"


def _samples() -> list[Any]:
    chat = {
        "model": "m",
        "messages": [{"role": "user", "content": "What is 2 plus 2?"}],
        "max_tokens": 16,
        "timeout": 30.0,
    }
    return [
        chat,
        {"choices": [{"message": {"content": "4"}}], "usage": {"total_tokens": 9}},
        {},
        None,
        "plain text",
        {"api_key": "abc", "nested": {"Authorization": "Bearer x"}},
        {"API_KEY": ""},  # a key-like field left empty is kept as is
        {"api_\u212aey": "kelvin sign"},  # lower() of the key is "api_key"
        {"text": "uses sk-canary-0123456789 here"},
        {"text": 'has quote"and\\slash-secret inside'},
        {"text": "une clé-secrète-é ici"},
        {"text": "é but no secret", "list": ["a", 1, 2.5, True, None]},
        {"dataset": REF, "rows": [REF, {"deeper": REF + "/attr/rows"}]},
        {"mentions": 'the word "api_key" in a message'},
        {7: "int key", "when": object.__name__},
    ]


def test_stored_json_equals_redacting_first() -> None:
    for secrets in ([], SECRETS):
        for value in _samples():
            redacted = redact(value, secrets)
            expected = (dumps(redacted), " ".join(sorted(set(refs_in(redacted)))))
            assert _stored(value, secrets) == expected, value
