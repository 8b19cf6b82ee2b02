"""Weave's query language ($expr with $eq, $gt, $and, $in, $contains, $getField, ...) evaluated
over plain dicts, and dotted-path access for sorting."""

from __future__ import annotations

from typing import Any


def get_path(record: Any, path: str) -> Any:
    value = record
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _convert(value: Any, to: str) -> Any:
    try:
        if to == "double":
            return float(value)
        if to == "int":
            return int(value)
        if to == "bool":
            return bool(value)
        if to == "string":
            return "" if value is None else str(value)
    except (TypeError, ValueError):
        return None
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "$eq":
        return bool(left == right)
    if left is None or right is None:
        return False
    try:
        if op == "$gt":
            return bool(left > right)
        if op == "$gte":
            return bool(left >= right)
        if op == "$lt":
            return bool(left < right)
        return bool(left <= right)
    except TypeError:
        return False


def evaluate(expr: Any, record: dict[str, Any]) -> Any:
    """The value of a query expression for one record."""
    if not isinstance(expr, dict) or len(expr) != 1:
        return expr
    ((op, arg),) = expr.items()
    if op == "$getField":
        return get_path(record, arg)
    if op == "$literal":
        return arg
    if op == "$and":
        return all(evaluate(e, record) for e in arg)
    if op == "$or":
        return any(evaluate(e, record) for e in arg)
    if op == "$not":
        return not evaluate(arg[0] if isinstance(arg, list) else arg, record)
    if op in ("$eq", "$gt", "$gte", "$lt", "$lte"):
        return _compare(op, evaluate(arg[0], record), evaluate(arg[1], record))
    if op == "$in":
        needle = evaluate(arg[0], record)
        return any(needle == evaluate(item, record) for item in arg[1])
    if op == "$contains":
        haystack = evaluate(arg["input"], record)
        needle = evaluate(arg["substr"], record)
        if not isinstance(haystack, str) or not isinstance(needle, str):
            return False
        if arg.get("case_insensitive"):
            return needle.lower() in haystack.lower()
        return needle in haystack
    if op == "$convert":
        return _convert(evaluate(arg["input"], record), arg.get("to", "string"))
    raise ValueError(f"unsupported query operation {op}")


def matches(query: Any, record: dict[str, Any]) -> bool:
    if not query:
        return True
    expr = query.get("$expr", query) if isinstance(query, dict) else query
    return bool(evaluate(expr, record))


def sort_records(records: list[dict[str, Any]], sort_by: Any) -> list[dict[str, Any]]:
    """Stable sort by each {field, direction}, last key first; None sorts first."""
    for spec in reversed(list(sort_by or [])):
        field = spec["field"]
        reverse = spec.get("direction", "asc") == "desc"

        def key(record: dict[str, Any], field: str = field) -> tuple[int, Any]:
            value = get_path(record, field)
            if value is None:
                return (0, "")
            return (1, value) if isinstance(value, int | float | str) else (1, str(value))

        records.sort(key=key, reverse=reverse)
    return records
