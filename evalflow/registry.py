"""Registering a model: validated, appended to evals/models.yaml (comments kept)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml
from pydantic import ValidationError

from evalflow.config import ModelSpec, load_registry, registry_path
from evalflow.errors import ConfigError


def add_model(spec_fields: dict[str, object], path: Path | None = None) -> ModelSpec:
    path = path or registry_path()
    registry = load_registry(path)
    try:
        spec = ModelSpec.model_validate(spec_fields)
    except ValidationError as exc:
        raise ConfigError(f"model {spec_fields.get('name')!r}: {exc.errors()[0]['msg']}") from None
    if spec.name in registry:
        raise ConfigError(f"a model named {spec.name!r} is already registered in {path}")
    entry = spec.model_dump(exclude_defaults=True)
    entry.setdefault("endpoint", spec.endpoint)
    block = textwrap.indent(yaml.safe_dump([entry], sort_keys=False), "  ")
    text = path.read_text(encoding="utf-8") if path.exists() else "models:\n"
    path.write_text(text.rstrip("\n") + "\n\n" + block, encoding="utf-8")
    return spec
