"""Drift tests of evalflow/patches: each fails when an upstream internal a patch relies on
changes, and each patch behaves as the library itself does on sample inputs. The second half
renames or removes those internals (monkeypatch) and checks that the drift checks notice, and
that the patch then stands aside with a warning, leaving the library as shipped."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evalflow.patches import _gate
from evalflow.patches import llama_cpp as llama_patch
from evalflow.patches import openai as openai_patch
from evalflow.patches import openai_transport as transport_patch
from evalflow.patches import prefect_parameters as parameters_patch
from evalflow.patches import weave as weave_patch
from evalflow.patches import weave_plain as plain_patch
from evalflow.patches import weave_replay as replay_patch
from evalflow.patches import weave_table as table_patch
from evalflow.patches._gate import version_problem

CHAT_MODULE = "openai.resources.chat.completions.completions"


@pytest.fixture
def fresh_installs() -> Iterator[None]:
    """Each install function runs its checks again in the test (and after it)."""
    installs = (
        openai_patch.skip_plain_chat_transform,
        transport_patch._problems,
        llama_patch.disable_weight_repacking,
        weave_patch._is_op_problems,
        table_patch._problems,
        plain_patch._problems,
        replay_patch._problems,
        parameters_patch._problems,
    )
    for install in installs:
        install.cache_clear()
    _gate._warned.clear()
    yield
    for install in installs:
        install.cache_clear()
    _gate._warned.clear()


# --- the internals are as verified, and the patched behaviour is upstream's ----------------


def test_the_installed_versions_are_the_verified_ones() -> None:
    patches = (openai_patch, transport_patch, weave_patch, table_patch, llama_patch, plain_patch)
    for patch in patches:
        assert version_problem(patch.DISTRIBUTION, patch.VERIFIED) is None


def _sample_bodies() -> list[dict[str, Any]]:
    import openai

    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2 plus 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    return [
        {"model": "m", "messages": messages},
        {"model": "m", "messages": messages, "temperature": 0.0, "max_tokens": 12, "seed": 7},
        {"model": "m", "messages": messages, "stop": ["\n", "Q:"], "top_p": openai.NOT_GIVEN},
        {"model": "m", "messages": messages, "stream": False, "user": None, "n": openai.omit},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
        {"model": "m", "messages": messages, "response_format": {"type": "json_object"}},
    ]


def test_openai_transform_hook_is_as_verified_and_plain_bodies_transform_alike() -> None:
    from openai._utils import async_maybe_transform
    from openai.types.chat import completion_create_params as params

    assert openai_patch.drift() == []
    assert openai_patch.skip_plain_chat_transform()
    installed = sys.modules[CHAT_MODULE].async_maybe_transform  # type: ignore[attr-defined]
    for body in _sample_bodies():
        expected = asyncio.run(
            async_maybe_transform(body, params.CompletionCreateParamsNonStreaming)
        )
        plain = openai_patch.plain_chat_body(body)
        assert plain is None or plain == expected, body
        got = asyncio.run(installed(body, params.CompletionCreateParamsNonStreaming))
        assert got == expected, body
    assert sum(openai_patch.plain_chat_body(b) is not None for b in _sample_bodies()) == 4


@contextlib.contextmanager
def _two_write_endpoint() -> Iterator[str]:
    """bench/plain_endpoint.py's stdlib server at zero latency, in this process: it writes a
    response's headers and body in two writes, Nagle's algorithm on."""
    from http.server import ThreadingHTTPServer

    from bench.plain_endpoint import Counts, handler

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler({"q": "a"}, 0.0, Counts()))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _round_trips_ms(base_url: str, http: Any, requests: int = 21) -> list[float]:
    """Each chat request's time through the real openai client, one at a time on one kept-alive
    connection (the first, which opens it, left out)."""
    import openai

    async def main() -> list[float]:
        times: list[float] = []
        async with openai.AsyncOpenAI(base_url=base_url, api_key="k", http_client=http) as client:
            for _ in range(requests):
                started = time.perf_counter()
                reply = await client.chat.completions.create(
                    model="oracle", messages=[{"role": "user", "content": "q"}]
                )
                times.append(1000 * (time.perf_counter() - started))
                assert reply.choices[0].message.content == "a"
        return times[1:]

    return asyncio.run(main())


def test_openai_transport_is_as_verified_and_answers_are_not_held_for_an_ack() -> None:
    """On an endpoint that writes headers and body apart, openai's own aiohttp client waits for
    Linux's delayed acknowledgement (40 ms at least) on most requests; evalflow's does not."""
    import httpx2
    import openai

    from evalflow.tls import ssl_context

    assert transport_patch.drift() == []
    limits = httpx2.Limits(max_connections=4, max_keepalive_connections=4)
    with _two_write_endpoint() as url:
        shipped = _round_trips_ms(url, openai.DefaultAioHttpClient(limits=limits, timeout=10))
        ours = _round_trips_ms(url, transport_patch.http_client(limits, 10, ssl_context()))
    assert statistics.median(shipped) >= 35, shipped  # the stall this patch removes is here
    assert statistics.median(ours) < 20, ours


def test_weave_wandb_lookup_is_as_verified_and_sees_no_run_either_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from weave.trace.wandb_run_context import _get_global_wandb_run

    assert weave_patch.wandb_drift() == []
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    assert _get_global_wandb_run() is None  # weave as shipped, wandb not installed
    assert weave_patch.remember_wandb_is_absent()
    assert _get_global_wandb_run() is None  # the same with the patch


def _is_op_samples() -> list[object]:
    import weave

    @weave.op
    def traced(x: int) -> int:
        return x

    class Answerer(weave.Model):
        @weave.op
        def predict(self, question: str) -> str:
            return question

    class HalfOp:
        name = "looks like an op"
        call = None

    def plain(x: int) -> int:
        return x

    answerer = Answerer()
    values = [None, 3, 2.5, True, "text", b"bytes", [1], (1,), {"a": 1}, {1}]
    return [traced, answerer.predict, Answerer.predict, plain, len, HalfOp(), answerer, *values]


def test_weave_is_op_is_as_verified_and_the_attribute_check_agrees() -> None:
    from weave.trace.op import Op

    assert weave_patch.is_op_drift() == []
    attribute_is_op = weave_patch._attribute_is_op()
    for sample in _is_op_samples():
        assert attribute_is_op(sample) == isinstance(sample, Op), sample
    assert weave_patch.use_attribute_is_op() >= 0
    import weave.evaluation.eval as weave_eval

    assert weave_eval.is_op is attribute_is_op  # the module weave's Evaluation uses


def test_llama_cpp_field_is_as_verified_and_only_it_changes(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    import llama_cpp.llama_cpp as native

    assert llama_patch.drift() == []
    upstream = native.llama_model_default_params
    monkeypatch.setattr(native, "llama_model_default_params", upstream)  # restored after
    assert llama_patch.disable_weight_repacking()
    patched, expected = native.llama_model_default_params(), upstream()
    assert expected.use_extra_bufts is True  # what upstream loads with
    expected.use_extra_bufts = False
    assert patched.use_extra_bufts is False
    assert _field_bytes(patched) == _field_bytes(expected)


def _field_bytes(params: ctypes.Structure) -> dict[str, bytes]:
    """Each field's bytes (the padding between fields is whatever the stack held)."""
    raw, kind = bytes(params), type(params)
    spans = {name: getattr(kind, name) for name, *_ in kind._fields_}
    return {name: raw[f.offset : f.offset + f.size] for name, f in spans.items()}


# --- renamed upstream internals are noticed, and the patch stands aside --------------------


def test_openai_drift_is_noticed_and_the_sdk_transform_kept(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    import openai._utils

    chat = sys.modules[CHAT_MODULE]
    monkeypatch.delattr(chat, "async_maybe_transform")
    assert any("async_maybe_transform" in p for p in openai_patch.drift())
    with pytest.warns(RuntimeWarning, match="openai"):
        assert not openai_patch.skip_plain_chat_transform()
    assert not hasattr(chat, "async_maybe_transform")  # nothing created in its place
    monkeypatch.undo()

    async def renamed(value: object, expected_type: object) -> object:
        return value

    monkeypatch.setattr(openai._utils, "async_maybe_transform", renamed)
    assert any("takes ['value', 'expected_type']" in p for p in openai_patch.drift())


def test_openai_outside_the_verified_versions_stands_aside(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    chat = sys.modules[CHAT_MODULE]
    monkeypatch.setattr(chat, "async_maybe_transform", object.__new__(type("SDK", (), {})))
    before = chat.async_maybe_transform
    monkeypatch.setattr(openai_patch, "VERIFIED", ">=99")
    with pytest.warns(RuntimeWarning, match=r"openai \S+ is not in the verified >=99"):
        assert not openai_patch.skip_plain_chat_transform()
    assert chat.async_maybe_transform is before


def test_evalflows_client_still_goes_through_a_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The endpoint's host does not resolve: only the proxy (HTTP_PROXY) can answer."""
    import httpx2

    from evalflow.tls import ssl_context

    with _two_write_endpoint() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.removesuffix("/v1"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        http = transport_patch.http_client(httpx2.Limits(max_connections=2), 10, ssl_context())
        assert len(_round_trips_ms("http://endpoint.invalid/v1", http, requests=2)) == 1


def test_openai_transport_drift_is_noticed_and_openais_client_kept(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    import httpx2
    import openai
    from openai._vendor.httpx_aiohttp import transport

    from evalflow.tls import ssl_context

    def get_client(self: Any) -> Any:  # a session of its own: `client` no longer used
        return None

    monkeypatch.setattr(transport.AiohttpTransport, "get_client", get_client)
    assert any("get_client" in p for p in transport_patch.drift())
    monkeypatch.undo()
    monkeypatch.setattr(transport_patch, "_MODULE", "openai._vendor.httpx_aiohttp_moved")
    assert any("does not import" in p for p in transport_patch.drift())
    limits = httpx2.Limits(max_connections=4, max_keepalive_connections=4)
    with pytest.warns(RuntimeWarning, match="TCP_QUICKACK"):
        client = transport_patch.http_client(limits, 10, ssl_context())
    assert isinstance(client, openai.DefaultAioHttpClient)
    with _two_write_endpoint() as url:  # still answers, as openai ships it
        assert len(_round_trips_ms(url, client, requests=2)) == 1


def test_without_quickack_or_readable_internals_openais_client_is_kept(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    import warnings

    import httpx2
    import openai

    from evalflow.tls import ssl_context

    limits = httpx2.Limits(max_connections=2)
    acking = transport_patch._acking_client()
    monkeypatch.setattr(transport_patch, "_QUICKACK", None)  # as on macOS: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = transport_patch.http_client(limits, 10, ssl_context())
    assert type(client) is not acking and isinstance(client, openai.DefaultAioHttpClient)
    monkeypatch.undo()

    def unreadable(obj: object) -> str:
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", unreadable)
    with pytest.warns(RuntimeWarning, match="could not be read"):
        client = transport_patch.http_client(limits, 10, ssl_context())
    assert type(client) is not acking


def test_weave_drift_is_noticed(monkeypatch: pytest.MonkeyPatch, fresh_installs: None) -> None:
    import weave.trace.op as op_module
    from weave.trace import wandb_run_context

    annotations = dict(op_module.Op.__annotations__)
    annotations["op_name"] = annotations.pop("name")
    monkeypatch.setattr(op_module.Op, "__annotations__", annotations)
    assert any("added ['op_name'], gone ['name']" in p for p in weave_patch.is_op_drift())
    with pytest.warns(RuntimeWarning, match="is_op"):
        assert weave_patch.use_attribute_is_op() == 0
    monkeypatch.delattr(wandb_run_context, "_get_global_wandb_run")
    assert weave_patch.wandb_drift() == [
        "weave.trace.wandb_run_context._get_global_wandb_run is gone"
    ]


def _walk_samples() -> list[Any]:
    """Values weave walks in a call's inputs and output: plain ones, and others (enums,
    namedtuples, pydantic models, dataclasses, dict subclasses) left to weave."""
    import collections
    import dataclasses
    import enum

    import pydantic

    class Colour(enum.IntEnum):
        RED = 1

    class Point(pydantic.BaseModel):
        x: int

    @dataclasses.dataclass
    class Pair:
        a: int
        b: str

    message = {"role": "user", "content": "What is 2 plus 2? é"}
    chat = {
        "model": "m",
        "messages": [message, {"role": "assistant", "content": "4"}],
        "max_tokens": 16,
        "timeout": 30.0,
        "stop": ("\n", "Q:"),
        "seed": None,
        "logprobs": False,
    }
    return [
        chat,
        {"choices": [{"message": {"content": "4", "tool_calls": None}}], "usage": {"n": 1}},
        "text",
        3,
        2.5,
        float("nan"),
        True,
        None,
        [],
        {},
        [[1, [2, (3, "x")]], {"deep": {"er": [None]}}],
        {1: "int key"},
        {"colour": Colour.RED},
        collections.namedtuple("NT", "a b")(1, 2),
        {"point": Point(x=1)},
        [Pair(1, "b")],
        collections.OrderedDict(a=1),
        {"bytes": b"x"},
    ]


def test_weave_walks_are_as_verified_and_plain_values_walk_alike() -> None:
    """Each patched walk gives what weave's own does, on plain values and on others (which go
    to weave's own), and nothing is saved for a plain value."""
    import weave.trace.weave_client as weave_client
    from weave.trace.serialization import serialize

    assert plain_patch.drift() == []
    from evalflow.weave_setup import init_weave

    client = init_weave("local/plain-walks")
    assert plain_patch.use_plain_fast_path()
    assert weave_client.to_json is not serialize.to_json
    fast_json, fast_refs = weave_client.to_json, weave_client.map_to_refs
    own_json, own_refs = plain_patch._original(fast_json), plain_patch._original(fast_refs)
    project = client.project_id
    for sample in _walk_samples():
        expected, got = own_json(sample, project, client), fast_json(sample, project, client)
        assert repr(got) == repr(expected), sample
        assert repr(fast_refs(sample)) == repr(own_refs(sample)), sample
        if plain_patch.is_plain(sample):
            assert client._save_nested_objects(sample) is None
            if isinstance(sample, (dict, list)):
                assert got is not sample  # a copy, as weave's
    assert not plain_patch.is_plain({"colour": 1.0, "k": [b"x"]})


def test_weave_walks_drift_is_noticed_and_weave_walks_as_shipped(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    import weave.trace.weave_client as weave_client
    from weave.trace.serialization import serialize

    plain_patch.restore_weave_walks()
    assert weave_client.to_json is serialize.to_json
    encoders = [serialize._encode_primitive, *serialize._ENCODERS]
    monkeypatch.setattr(serialize, "_ENCODERS", encoders)
    assert any("first encoders changed" in p for p in plain_patch.drift())
    monkeypatch.setitem(plain_patch.VERIFIED_SOURCES, "weave_client.map_to_refs", "0" * 16)
    assert "weave's weave_client.map_to_refs changed" in plain_patch.drift()
    with pytest.warns(RuntimeWarning, match="plain values"):
        assert not plain_patch.use_plain_fast_path()
    assert weave_client.to_json is serialize.to_json
    monkeypatch.undo()
    plain_patch._problems.cache_clear()
    assert plain_patch.use_plain_fast_path()  # as the rest of the session had it


TABLE_ROWS = [
    {"row_id": f"r{i}", "question": f"{i} + {i} = ? é", "target": 2 * i} for i in range(12)
]


def _in_chunks(size: int) -> Iterator[list[dict[str, Any]]]:
    return (TABLE_ROWS[i : i + size] for i in range(0, len(TABLE_ROWS), size))


def test_weave_table_is_as_verified_and_publishes_what_weave_does(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    import weave

    from evalflow.weave_setup import init_weave

    assert table_patch.drift() == []
    client = init_weave("local/patch-table")
    own = weave.Dataset(name="tab", rows=list(TABLE_ROWS))
    own_uri = weave.publish(own, name="tab").uri()
    own_digests = own.rows.table_ref.row_digests  # type: ignore[union-attr]
    sent: list[int] = []
    create = client.server.table_create

    def counted(req: Any) -> Any:
        sent.append(len(req["table"]["rows"]))
        return create(req)

    monkeypatch.setattr(client.server, "table_create", counted)
    table = table_patch.publish_table(lambda: _in_chunks(5))
    assert table is not None and sent == []  # the store had the table: nothing sent
    assert list(table.row_digests) == own_digests
    uri = weave.publish(table_patch.stored_dataset("tab", table), name="tab").uri()
    assert uri == own_uri
    other = [{**row, "target": -1} for row in TABLE_ROWS]
    fresh = table_patch.publish_table(lambda: (other[i : i + 5] for i in range(0, 12, 5)))
    assert fresh is not None and sent == [5, 5, 2]
    fresh_uri = weave.publish(table_patch.stored_dataset("tab2", fresh), name="tab2").uri()
    assert [dict(row) for row in weave.ref(fresh_uri).get().rows] == other
    own_fresh = weave.Dataset(name="tab2", rows=list(other))
    assert weave.publish(own_fresh, name="tab2").uri() == fresh_uri
    assert list(fresh.row_digests) == own_fresh.rows.table_ref.row_digests  # type: ignore[union-attr]


def test_weave_table_drift_is_noticed_and_weave_uploads_the_rows(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    from weave.trace import weave_client

    def _save_table(self: Any, table: Any) -> Any:
        raise AssertionError("not called")

    monkeypatch.setattr(weave_client.WeaveClient, "_save_table", _save_table)
    assert table_patch.drift() == ["WeaveClient._save_table no longer keeps a stored table's ref"]
    with pytest.warns(RuntimeWarning, match="chunk by chunk"):
        assert table_patch.publish_table(lambda: _in_chunks(5)) is None
    monkeypatch.undo()  # weave's own upload is back; the patch still stands aside:
    monkeypatch.setattr(table_patch, "VERIFIED", ">=99")
    table_patch._problems.cache_clear()
    import weave

    from evalflow.config import DatasetSpec, Suite
    from evalflow.dataset import Row, RowStore
    from evalflow.evaluation import publish_dataset
    from evalflow.scorers import scorer_example
    from evalflow.weave_setup import init_weave

    init_weave("local/patch-table-aside")
    rows = [
        Row(f"r{i}", i, {"question": "q"}, str(i), {"question": "q", "answer": str(i)})
        for i in range(7)
    ]
    suite = Suite(name="aside", dataset=DatasetSpec(path="unused.jsonl"))
    dataset, digests = publish_dataset(suite, RowStore.of(rows, block_rows=3))
    own = weave.Dataset(name="aside", rows=[scorer_example(r) for r in rows])
    assert weave.publish(own, name="aside").uri() == dataset.ref.uri()  # type: ignore[union-attr]
    assert list(digests) == own.rows.table_ref.row_digests  # type: ignore[union-attr]
    assert [dict(r) for r in dataset.rows] == [scorer_example(r) for r in rows]


def test_a_suites_dataset_is_published_without_reading_its_stored_rows_back(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    """weave.Dataset's `columns_names` reads `rows[0]`, which on a stored table reads every
    row into a list first (500,000 rows: the whole table in memory after the run)."""
    from weave.trace.vals import WeaveTable

    from evalflow.config import DatasetSpec, Suite
    from evalflow.dataset import Row, RowStore
    from evalflow.evaluation import publish_dataset
    from evalflow.scorers import scorer_example
    from evalflow.weave_setup import init_weave

    init_weave("local/patch-table-shape")
    rows = [
        Row(f"r{i}", i, {"question": "q"}, str(i), {"question": "q", "answer": str(i)})
        for i in range(7)
    ]
    suite = Suite(name="shape", dataset=DatasetSpec(path="unused.jsonl"))

    def every_row(self: Any) -> Any:
        raise AssertionError("every stored row was read back")

    monkeypatch.setattr(WeaveTable, "_inefficiently_materialize_rows_as_list", every_row)
    dataset, digests = publish_dataset(suite, RowStore.of(rows, block_rows=3))
    assert dataset.columns_names == list(scorer_example(rows[0]))
    assert dataset.num_rows == 7 and len(digests) == 7
    monkeypatch.undo()
    assert [dict(r) for r in dataset.rows] == [scorer_example(r) for r in rows]


def _upload_peak(rows: int) -> int:
    """tracemalloc's peak while a table of `rows` rows not yet stored is published (chunks of
    200 rows, so the chunks' own peak stays small)."""
    import tracemalloc

    def chunks() -> Iterator[list[dict[str, Any]]]:
        for start in range(0, rows, 200):
            yield [{"row_id": f"r{i}", "q": f"{i}+{i}"} for i in range(start, start + 200)]

    tracemalloc.start()
    try:
        table = table_patch.publish_table(chunks)
        assert table is not None and len(table.row_digests) == rows
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_table_is_uploaded_holding_little_per_row(fresh_installs: None) -> None:
    """A table uploaded chunk by chunk keeps its row digests as 43 bytes of text a row; its
    last step (the table of every row's digest) took 310 bytes a row at the peak with a list
    of the digests as strings, 140 with the store's JSON text built from the packed digests,
    84 with that text written to SQLite a piece at a time."""
    from evalflow.weave_setup import init_weave

    init_weave("local/patch-table-memory")
    _upload_peak(200)  # imports and caches, outside the peaks
    small, large = _upload_peak(4_000), _upload_peak(24_000)
    per_row = (large - small) / 20_000
    assert per_row < 120, f"{per_row:.0f} bytes more per row"


def test_row_digests_are_kept_as_text_of_one_width_or_as_a_list() -> None:
    digests = table_patch.RowDigests()
    for d in ("a" * 43, "b" * 43, "c" * 43):
        digests.append(d)
    assert list(digests) == ["a" * 43, "b" * 43, "c" * 43] and digests[-1] == "c" * 43
    digests.append("é")
    assert list(digests) == ["a" * 43, "b" * 43, "c" * 43, "é"] and len(digests) == 4
    with pytest.raises(IndexError):
        table_patch.RowDigests()[0]


class _RenamedParams(ctypes.Structure):
    _fields_ = [("n_gpu_layers", ctypes.c_int), ("use_extra_buffer_types", ctypes.c_bool)]


def test_llama_cpp_renamed_field_is_noticed_and_never_set(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    import llama_cpp.llama_cpp as native

    def default_params() -> _RenamedParams:
        return _RenamedParams(0, True)

    monkeypatch.setattr(native, "llama_model_params", _RenamedParams)
    monkeypatch.setattr(native, "llama_model_default_params", default_params)
    assert any("no c_bool field 'use_extra_bufts'" in p for p in llama_patch.drift())
    with pytest.warns(RuntimeWarning, match="llama-cpp-python"):
        assert not llama_patch.disable_weight_repacking()
    assert native.llama_model_default_params is default_params
    assert not hasattr(native.llama_model_default_params(), "use_extra_bufts")


def test_prefect_temporary_servers_are_as_verified() -> None:
    from evalflow.patches import prefect as prefect_patch

    assert version_problem(prefect_patch.DISTRIBUTION, prefect_patch.VERIFIED) is None
    assert prefect_patch.drift() == []


def test_prefect_renamed_registry_is_noticed_and_nothing_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.server.api import server

    from evalflow.patches import _gate
    from evalflow.patches import prefect as prefect_patch

    monkeypatch.setattr(_gate, "_warned", set())
    monkeypatch.delattr(server.SubprocessASGIServer, "_instances")
    assert prefect_patch.drift() == [
        "SubprocessASGIServer._instances is no longer a dict of servers"
    ]
    with pytest.warns(RuntimeWarning, match="temporary servers"):
        assert prefect_patch.temporary_servers() == []


def _a_flow() -> Any:
    from prefect import flow

    @flow(name="parameters")
    def parameters(**kwargs: Any) -> None:
        return None

    return parameters


PLAIN_PARAMETERS: dict[str, Any] = {
    "suite": "qa-basics",
    "models": ["gemma-3-270m", "other"],
    "limit": None,
    "chunk_size": 200,
    "max_error_fraction": 0.1,
    "fresh": False,
    "nested": {"pair": (1, 2.5), "deep": [{"a": None}]},
}


def test_prefect_parameters_are_as_verified_and_plain_ones_are_recorded_alike(
    fresh_installs: None,
) -> None:
    import datetime

    assert version_problem(parameters_patch.DISTRIBUTION, parameters_patch.VERIFIED) is None
    assert parameters_patch.drift() == []
    ours, prefects = _a_flow(), _a_flow()
    assert parameters_patch.plain_parameters(ours)
    assert ours.serialize_parameters(PLAIN_PARAMETERS) == prefects.serialize_parameters(
        PLAIN_PARAMETERS
    )
    not_plain = {**PLAIN_PARAMETERS, "when": datetime.date(2026, 11, 27), "one": {1: "a"}}
    assert ours.serialize_parameters(not_plain) == prefects.serialize_parameters(not_plain)
    assert ours.serialize_parameters(not_plain)["when"] == "2026-11-27"  # Prefect's encoder


def test_the_evaluate_flow_records_its_parameters_without_importing_fastapi() -> None:
    """What the patch is for: `evalflow run`'s flow run does not import FastAPI for them."""
    import subprocess

    code = (
        "import sys\n"
        "from flows.evaluate import evaluate\n"
        f"recorded = evaluate.serialize_parameters({PLAIN_PARAMETERS!r})\n"
        "print(sorted(recorded), 'fastapi.encoders' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert done.stdout.split()[-1] == "False", done.stdout + done.stderr
    assert "suite" in done.stdout


def test_prefect_parameters_drift_is_noticed_and_prefects_method_kept(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    monkeypatch.setattr(parameters_patch, "VERIFIED_SOURCE", "0" * 16)
    assert parameters_patch.drift() == ["prefect's Flow.serialize_parameters changed"]
    flow = _a_flow()
    with pytest.warns(RuntimeWarning, match="FastAPI"):
        assert not parameters_patch.plain_parameters(flow)
    assert "serialize_parameters" not in vars(flow)  # Prefect's own method


def test_the_temporary_server_command_is_prefects_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """evalflow starts Prefect's temporary server itself, early (evalflow/temporary_server.py):
    with the very command and settings prefect's SubprocessASGIServer would use."""
    from prefect.server.api import server

    from evalflow.patches import prefect as prefect_patch

    seen: dict[str, Any] = {}

    def popen(args: list[str], env: dict[str, str], **_: Any) -> None:
        seen.update(args=args, env=env)

    monkeypatch.setattr(server.subprocess, "Popen", popen)
    monkeypatch.setattr(server.SubprocessASGIServer, "_instances", {})
    server.SubprocessASGIServer(port=8123)._run_uvicorn_command()
    ours = prefect_patch.temporary_server_command(8123)
    assert ours is not None
    assert seen["args"] == [sys.executable, *ours]
    assert {k: seen["env"][k] for k in prefect_patch.SERVER_SETTINGS} == (
        prefect_patch.SERVER_SETTINGS
    )


def test_outside_the_verified_prefect_the_temporary_server_is_prefects_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from evalflow.patches import _gate
    from evalflow.patches import prefect as prefect_patch

    monkeypatch.setattr(_gate, "_warned", set())
    monkeypatch.setattr(prefect_patch, "VERIFIED", ">=99")
    with pytest.warns(RuntimeWarning, match="temporary server started by evalflow"):
        assert prefect_patch.temporary_server_command(8123) is None


# --- weave_replay: a request sent before weave's import, traced afterwards -------------------


def _traced_pair(sim: Any, project: str, base_url: str) -> tuple[Any, Any, Any, Any]:
    """One request traced live through weave's wrapper and one sent through openai's own method
    and recorded by the replay; their two calls (flushed), and the replayed call's times."""
    import datetime

    import openai
    import weave
    from openai.resources.chat.completions import AsyncCompletions

    from evalflow.patches import weave_replay
    from evalflow.weave_setup import flush_weave, init_weave

    client = init_weave(project)
    own_create = AsyncCompletions.create.__wrapped__  # type: ignore[attr-defined]
    sent = {"model": "oracle", "max_tokens": 16, "timeout": 5.0}

    async def both() -> tuple[datetime.datetime, datetime.datetime]:
        api = openai.AsyncOpenAI(base_url=base_url, api_key="sk-replay-canary", max_retries=0)
        live = [{"role": "user", "content": "question 1?"}]
        with weave.attributes({"evalflow.row_id": "live"}), contextlib.suppress(openai.APIError):
            await api.chat.completions.create(messages=live, **sent)  # type: ignore[call-overload]
        kwargs: dict[str, Any] = {**sent, "messages": [{"role": "user", "content": "question 2?"}]}
        started = datetime.datetime.now(tz=datetime.UTC)
        output: Any = None
        error: BaseException | None = None
        try:
            output = await own_create(api.chat.completions, **kwargs)
        except openai.APIError as exc:
            error = exc
        ended = datetime.datetime.now(tz=datetime.UTC)
        attributes = {"evalflow.row_id": "held"}
        assert weave_replay.record_call(
            client, api.chat.completions, kwargs, attributes, started, ended, output, error
        )
        await api.close()
        return started, ended

    started, ended = asyncio.run(both())
    flush_weave(client)
    op = f"weave:///{client.project_id}/op/{weave_replay.OP_NAME}:*"
    calls = {
        c.attributes["evalflow.row_id"]: c for c in client.get_calls(filter={"op_names": [op]})
    }
    return calls["live"], calls["held"], started, ended


def test_weave_replay_is_as_verified_and_a_held_request_is_traced_as_a_live_one(
    sim: Any, fresh_installs: None
) -> None:
    """A request sent before weave's import and recorded afterwards has the trace a live one
    has (the same op, inputs but its messages, output shape, attributes and usage), with the
    times it was sent and answered; the key is not in it."""
    from evalflow.patches import weave_replay

    sim.configure(answer_key={"question 1?": "one", "question 2?": "two"})
    live, held, started, ended = _traced_pair(sim, "local/patch-replay", sim.base_url)
    assert weave_replay.drift() == []
    assert held.op_name == live.op_name
    assert held.output["choices"][0]["message"]["content"] == "two"
    assert live.output["choices"][0]["message"]["content"] == "one"
    assert {k: v for k, v in held.inputs.items() if k != "messages"} == {
        k: v for k, v in live.inputs.items() if k != "messages"
    }
    assert held.inputs["messages"] == [{"role": "user", "content": "question 2?"}]
    assert sorted(held.output) == sorted(live.output)
    assert {k: v for k, v in held.attributes.items() if k != "evalflow.row_id"} == {
        k: v for k, v in live.attributes.items() if k != "evalflow.row_id"
    }
    assert held.summary["usage"] == live.summary["usage"]
    assert (held.started_at, held.ended_at) == (started, ended)
    assert held.exception is None and live.exception is None
    assert "sk-replay-canary" not in repr(held.inputs) + repr(held.output)


def test_weave_replay_records_a_failed_request_as_weave_does(fresh_installs: None) -> None:
    """A held request that failed (nobody listening) is recorded with its error, as a live one."""
    from evalflow.endpoints.process import free_port

    live, held, _, _ = _traced_pair(
        None, "local/patch-replay-dead", f"http://127.0.0.1:{free_port()}/v1"
    )
    assert live.exception and held.exception
    said = [json.loads(call.exception) for call in (held, live)]
    assert [(e["type"], e["message"]) for e in said] == [
        ("APIConnectionError", "Connection error.")
    ] * 2
    assert held.output is None and live.output is None
    assert held.op_name == live.op_name


def test_weave_replay_drift_is_noticed_and_nothing_is_held(
    monkeypatch: pytest.MonkeyPatch, fresh_installs: None
) -> None:
    """When the integration's op cannot be found, the replay says so and records nothing; and
    with weave imported (here, always), no request is held: each waits for weave's wrapper."""
    from openai.resources.chat.completions import AsyncCompletions

    from evalflow import early_traces
    from evalflow.patches import weave_replay
    from evalflow.weave_setup import init_weave

    client = init_weave("local/patch-replay-drift")
    assert weave_replay.unwrapped_create() is None
    assert not early_traces.hold() and not early_traces.holding()
    monkeypatch.setattr(AsyncCompletions, "create", AsyncCompletions.create.__wrapped__)
    assert weave_replay.integration_op() is None
    assert any("no longer keeps" in p for p in weave_replay.drift())
    weave_replay._problems.cache_clear()
    with pytest.warns(RuntimeWarning, match="recorded afterwards"):
        recorded = weave_replay.record_call(client, None, {}, {}, None, None)  # type: ignore[arg-type]
    assert recorded is False


def test_a_held_request_whose_trace_fails_keeps_its_answer(
    sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent before weave was ready, a request keeps its answer if its trace cannot be
    recorded afterwards; a warning says so once, without the error's text (it may hold a key)."""
    import openai
    from openai.resources.chat.completions import AsyncCompletions

    from evalflow import early_traces
    from evalflow.weave_setup import init_weave

    sim.configure(answer_key={"held?": "kept"})
    client = init_weave("local/held-trace-fails")
    monkeypatch.setattr(
        early_traces, "_holding", early_traces._Holding(AsyncCompletions.create.__wrapped__)
    )  # type: ignore[attr-defined]
    monkeypatch.setattr(early_traces, "_said_failed", False)

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("the store is gone, sk-held-canary")

    monkeypatch.setattr(replay_patch, "record_call", broken)

    async def ask() -> Any:
        api = openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
        messages = [{"role": "user", "content": "held?"}]
        response = await early_traces.create(
            api.chat.completions, {"evalflow.row_id": "r"}, model="oracle", messages=messages
        )
        await api.close()
        return response

    assert early_traces.holding()
    assert asyncio.run(ask()).choices[0].message.content == "kept"
    with pytest.warns(RuntimeWarning, match="could not trace a request") as said:
        assert early_traces.trace_held(client) == 1
    assert "sk-held-canary" not in str(said[0].message)
    assert not early_traces.holding()
