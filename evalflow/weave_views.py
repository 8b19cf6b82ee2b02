"""A person's view of what a Weave project holds: calls and objects as rows."""

from __future__ import annotations

from typing import Any

from evalflow.weave_local.refs import op_base_name


def call_rows(client: Any, op: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The latest calls, newest first; `op` keeps those whose op name contains it."""
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
        rows.append(
            {
                "started_at": str(call.started_at)[:19],
                "op": name,
                "status": weave_summary.get("status"),
                "latency_ms": weave_summary.get("latency_ms"),
                "tokens": tokens or None,
                "id": call.id,
            }
        )
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
