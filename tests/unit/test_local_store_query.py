"""The local Weave store's query filters (weave's $expr language over plain records), its
sorting, and its parsing of weave ref URIs."""

from __future__ import annotations

import pytest

from evalflow.weave_local.query import evaluate, get_path, matches, sort_records
from evalflow.weave_local.refs import op_base_name, parse_ref, refs_in

CALL = {
    "op_name": "weave:///local/p/op/Evaluation.evaluate:abc",
    "inputs": {"model": "weave:///local/p/object/oracle:d1", "rows": [{"q": "a"}, {"q": "b"}]},
    "summary": {"weave": {"latency_ms": 120}},
    "output": {"correct": {"mean": 0.75}},
    "display_name": "Nightly run",
    "started_at": "2025-01-02",
}


def field(path: str) -> dict[str, str]:
    return {"$getField": path}


def test_dotted_paths_reach_into_dicts_and_lists() -> None:
    assert get_path(CALL, "summary.weave.latency_ms") == 120
    assert get_path(CALL, "inputs.rows.1.q") == "b"
    assert get_path(CALL, "inputs.rows.5.q") is None
    assert get_path(CALL, "output.missing.deeper") is None


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ({"$eq": [field("display_name"), {"$literal": "Nightly run"}]}, True),
        ({"$gt": [field("output.correct.mean"), {"$literal": 0.5}]}, True),
        ({"$lte": [field("output.correct.mean"), {"$literal": 0.5}]}, False),
        ({"$gte": [field("missing"), {"$literal": 0}]}, False),
        ({"$lt": [field("display_name"), {"$literal": 3}]}, False),
        ({"$not": [{"$eq": [field("display_name"), {"$literal": "x"}]}]}, True),
        (
            {
                "$in": [
                    field("started_at"),
                    [{"$literal": "2025-01-01"}, {"$literal": "2025-01-02"}],
                ]
            },
            True,
        ),
        ({"$contains": {"input": field("display_name"), "substr": {"$literal": "night"}}}, False),
        (
            {
                "$contains": {
                    "input": field("display_name"),
                    "substr": {"$literal": "night"},
                    "case_insensitive": True,
                }
            },
            True,
        ),
        ({"$contains": {"input": field("summary"), "substr": {"$literal": "w"}}}, False),
        ({"$convert": {"input": field("summary.weave.latency_ms"), "to": "double"}}, 120.0),
        ({"$convert": {"input": field("display_name"), "to": "int"}}, None),
        ({"$convert": {"input": field("missing"), "to": "string"}}, ""),
    ],
)
def test_query_operations(expr: dict[str, object], value: object) -> None:
    assert evaluate(expr, CALL) == value


def test_and_or_combine_and_an_empty_query_matches_everything() -> None:
    named = {"$eq": [field("display_name"), {"$literal": "Nightly run"}]}
    slow = {"$gt": [field("summary.weave.latency_ms"), {"$literal": 1000}]}
    assert matches({"$expr": {"$or": [named, slow]}}, CALL)
    assert not matches({"$expr": {"$and": [named, slow]}}, CALL)
    assert matches(None, CALL) and matches({}, CALL)


def test_an_unknown_operation_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unsupported query operation \$regex"):
        evaluate({"$regex": [field("display_name"), "N.*"]}, CALL)


def test_sorting_is_stable_by_each_key_with_missing_values_first() -> None:
    records = [
        {"id": 1, "s": {"m": 0.5}, "name": "b"},
        {"id": 2, "s": {"m": 0.9}, "name": "a"},
        {"id": 3, "name": "c"},
        {"id": 4, "s": {"m": 0.5}, "name": "a"},
    ]
    by_mean = sort_records(list(records), [{"field": "s.m", "direction": "desc"}])
    assert [r["id"] for r in by_mean] == [2, 1, 4, 3]
    two_keys = sort_records(list(records), [{"field": "s.m"}, {"field": "name"}])
    assert [r["id"] for r in two_keys] == [3, 4, 1, 2]
    assert sort_records(list(records), None) == records


def test_refs_are_parsed_with_their_path_edges() -> None:
    ref = parse_ref("weave:///local/evalflow/object/qa%20basics:abc123/attr/rows/index/3")
    assert (ref.project_id, ref.kind, ref.name, ref.digest) == (
        "local/evalflow",
        "object",
        "qa basics",
        "abc123",
    )
    assert ref.extra == (("attr", "rows"), ("index", "3"))
    table = parse_ref("weave:///e/p/table/d1g35t")
    assert (table.kind, table.name, table.digest, table.extra) == ("table", "", "d1g35t", ())


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("http://example.com/x", "not a weave ref"),
        ("weave:///e/p/object", "incomplete weave ref"),
        ("weave:///e/p/object/n:d/attr", "unpaired path edge"),
    ],
)
def test_malformed_refs_are_refused(uri: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_ref(uri)


def test_refs_are_found_anywhere_in_a_value_and_op_names_shortened() -> None:
    assert sorted(refs_in(CALL)) == [
        "weave:///local/p/object/oracle:d1",
        "weave:///local/p/op/Evaluation.evaluate:abc",
    ]
    assert op_base_name(CALL["op_name"]) == "Evaluation.evaluate"
    assert op_base_name("plain_name") == "plain_name"
    assert op_base_name("weave:///broken") == "weave:///broken"
