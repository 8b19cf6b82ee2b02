"""Suites on Hugging Face Hub datasets: `hf://datasets/OWNER/NAME/FILE` with a field mapping,
read offline from a local copy with the hub's layout (EVALFLOW_HF_MIRROR), and one clear line
when the hub cannot be reached."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from evalflow.config import Suite, load_suite
from evalflow.dataset import load_rows
from evalflow.errors import ConfigError, DatasetError

# The columns a hub dataset might have; none is named like evalflow's defaults.
HUB_ROWS = [
    {"uid": "q-001", "query": "What is 2 + 2?", "context": "arithmetic", "gold": "4"},
    {"uid": "q-002", "query": "Capital of France?", "context": "geography", "gold": "Paris"},
    {"uid": "q-003", "query": "H2O is better known as?", "context": "chemistry", "gold": "water"},
]


def hub_suite(tmp_path: Path, path: str) -> Suite:
    """A suite file naming a hub dataset and mapping its columns, as a user writes it."""
    suite_file = tmp_path / "suites" / "hub.yaml"
    suite_file.parent.mkdir(exist_ok=True)
    suite_file.write_text(
        f"dataset:\n"
        f"  path: {path}\n"
        f"  id_field: uid\n"
        f"  input_fields: [query, context]\n"
        f"  target_field: gold\n"
        f"prompt:\n"
        f"  user: '{{context}}: {{query}}'\n"
    )
    return load_suite(str(suite_file))


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local copy of the hub with its layout: <mirror>/acme/qa/data/test.{jsonl,parquet}."""
    root = tmp_path / "hf-mirror"
    data = root / "acme" / "qa" / "data"
    data.mkdir(parents=True)
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in HUB_ROWS))
    pd.DataFrame(HUB_ROWS).to_parquet(data / "test.parquet")
    monkeypatch.setenv("EVALFLOW_HF_MIRROR", str(root))
    return root


@pytest.mark.parametrize("name", ["test.jsonl", "test.parquet"])
def test_hub_dataset_with_a_field_mapping(tmp_path: Path, mirror: Path, name: str) -> None:
    uri = f"hf://datasets/acme/qa/data/{name}"
    suite = hub_suite(tmp_path, uri)
    assert suite.dataset_path() == uri  # not taken for a path beside the suite
    rows = load_rows(suite.dataset_path(), suite.dataset)
    assert [r.id for r in rows] == ["q-001", "q-002", "q-003"]
    assert rows[1].inputs == {"query": "Capital of France?", "context": "geography"}
    assert [r.target for r in rows] == ["4", "Paris", "water"]
    assert len(load_rows(uri, suite.dataset, limit=2)) == 2


def test_hub_rows_are_validated_like_local_ones(tmp_path: Path, mirror: Path) -> None:
    bad = mirror / "acme" / "qa" / "data" / "bad.jsonl"
    bad.write_text(json.dumps(HUB_ROWS[0]) + "\n" + json.dumps({"uid": "x", "query": "q"}) + "\n")
    suite = hub_suite(tmp_path, "hf://datasets/acme/qa/data/bad.jsonl")
    with pytest.raises(DatasetError) as caught:
        load_rows(suite.dataset_path(), suite.dataset)
    assert "line 2: missing fields 'context', 'gold'" in str(caught.value)


def test_a_file_missing_from_the_local_copy(tmp_path: Path, mirror: Path) -> None:
    suite = hub_suite(tmp_path, "hf://datasets/acme/qa/data/train.jsonl")
    with pytest.raises(DatasetError) as caught:
        load_rows(suite.dataset_path(), suite.dataset)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("dataset hf://datasets/acme/qa/data/train.jsonl: not in the local")
    assert str(mirror / "acme" / "qa" / "data" / "train.jsonl") in message


def test_only_hub_datasets_and_known_formats(tmp_path: Path, mirror: Path) -> None:
    with pytest.raises(ConfigError, match="hf://datasets/OWNER/NAME/FILE"):
        hub_suite(tmp_path, "hf://acme/qa/data/test.jsonl")  # a model repo, not a dataset
    suite = hub_suite(tmp_path, "hf://datasets/acme/qa/data/test.txt")
    with pytest.raises(DatasetError, match=r"unknown format '\.txt'"):
        load_rows(suite.dataset_path(), suite.dataset)


def test_an_unreachable_hub_is_one_line_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This machine has no internet: the real hub cannot be reached (with internet, the
    dataset does not exist: a 404, the same error)."""
    monkeypatch.delenv("EVALFLOW_HF_MIRROR", raising=False)
    uri = "hf://datasets/evalflow-tests/no-such-dataset-7c1e/data/test.jsonl"
    suite = hub_suite(tmp_path, uri)
    started = time.monotonic()
    with pytest.raises(DatasetError) as caught:
        load_rows(suite.dataset_path(), suite.dataset)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"dataset {uri}: cannot read it from the Hugging Face Hub (")
    assert message.endswith(
        "); set HF_TOKEN for a gated dataset, or EVALFLOW_HF_MIRROR to a local copy"
    )
    assert elapsed < 30, f"took {elapsed:.1f} s"
