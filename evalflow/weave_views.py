"""A person's view of what a Weave project holds: calls and objects as rows."""

from __future__ import annotations

import json
from typing import Any

from evalflow.weave_local.redact import redact
from evalflow.weave_local.refs import PREFIX, op_base_name

PREVIEW = 60  # characters of a call's inputs and output shown in a table


def _short_refs(value: Any) -> Any:
    """Refs as `name:digest8` (a dataset row, a model), the rest as it is."""
    if isinstance(value, str) and value.startswith(PREFIX):
        head = value[len(PREFIX) :].split("/")
        name = head[3] if len(head) > 3 else value
        return name.split(":")[0] + ":" + name.partition(":")[2][:8]
    if isinstance(value, dict):
        return {k: _short_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_short_refs(v) for v in value]
    return value


def _exception_line(text: str | None) -> str | None:
    """An exception as weave records it (JSON with type and message) in one line."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict) and "message" in value:
        return f"{value.get('type', 'Exception')}: {value['message']}"
    return text


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def preview(inputs: Any, output: Any, exception: str | None) -> str:
    """`inputs -> output` (or the exception) cut to PREVIEW characters each side."""

    def cut(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= PREVIEW else text[: PREVIEW - 3] + "..."

    result = exception if exception else _text(output)
    return f"{cut(_text(_short_refs(inputs)))} -> {cut(result)}"


def call_rows(
    client: Any, op: str | None = None, limit: int = 20, detail: bool = False
) -> list[dict[str, Any]]:
    """The latest calls, newest first; `op` keeps those whose op name contains it. Each with
    its inputs, output and exception (secrets redacted): in full with `detail`, else as a
    one-line preview."""
    rows = []
    calls = client.server.calls_query_stream(
        {"project_id": client.project_id, "sort_by": [{"field": "started_at", "direction": "desc"}]}
    )
    for call in calls:
        name = op_base_name(call.op_name)
        if op and op not in name:
            continue
        usage = (call.summary or {}).get("usage") or {}
        tokens = sum(int(u.get("total_tokens") or 0) for u in usage.values())
        weave_summary = (call.summary or {}).get("weave") or {}
        inputs, output = redact(call.inputs or {}), redact(call.output)
        exception = redact(_exception_line(call.exception))
        row: dict[str, Any] = {
            "started_at": str(call.started_at)[:19],
            "op": name,
            "status": weave_summary.get("status"),
            "latency_ms": weave_summary.get("latency_ms"),
            "tokens": tokens or None,
            "id": call.id,
        }
        if detail:
            row.update(inputs=inputs, output=output, exception=exception)
        else:
            row["call"] = preview(inputs, output, exception)
        rows.append(row)
        if len(rows) >= limit:
            break
    return rows


def object_rows(
    client: Any, kind: str | None = None, name: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """Objects, newest first: kind is `op`, `object`, or a class such as Dataset."""
    objs = client.server.objs_query(
        {
            "project_id": client.project_id,
            "metadata_only": True,
            "sort_by": [{"field": "created_at", "direction": "desc"}],
        }
    ).objs
    rows = []
    for obj in objs:
        kinds = {obj.kind, obj.base_object_class, obj.leaf_object_class}
        if kind and kind not in kinds:
            continue
        if name and name not in obj.object_id:
            continue
        rows.append(
            {
                "created_at": str(obj.created_at)[:19],
                "name": f"{obj.object_id}:v{obj.version_index}",
                "kind": obj.leaf_object_class or obj.kind,
                "latest": bool(obj.is_latest),
                "digest": obj.digest[:12],
            }
        )
        if len(rows) >= limit:
            break
    return rows
