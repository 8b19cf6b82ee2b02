"""Suites (evals/<name>.yaml) and the model registry (evals/models.yaml), validated."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema

from evalflow.errors import ConfigError, UnknownNameError
from evalflow.project import project_root

WANDB_BASE_URL = "https://api.inference.wandb.ai/v1"
WANDB_BASE_URL_ENV = "EVALFLOW_WANDB_BASE_URL"  # another address of W&B Inference (a proxy)


def wandb_base_url() -> str:
    return os.environ.get(WANDB_BASE_URL_ENV) or WANDB_BASE_URL


LOCAL_ENDPOINT = "local"


def base_url_problem(url: str) -> str | None:
    """What is wrong with an endpoint's base URL, or None."""
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        return f"{url!r} is not an http(s) URL (such as http://127.0.0.1:8000/v1)"
    try:
        parsed.port  # noqa: B018 (a bad port raises)
    except ValueError:
        return f"{url!r} has a bad port"
    if not parsed.hostname:
        return f"{url!r} names no host (such as http://127.0.0.1:8000/v1)"
    return None


def check_base_url(url: str) -> str:
    if problem := base_url_problem(url):
        raise ConfigError(f"--base-url: {problem}")
    return url


def evals_dir() -> Path:
    """Where suites and the model registry live: EVALFLOW_EVALS_DIR, else the shipped evals/."""
    raw = os.environ.get("EVALFLOW_EVALS_DIR")
    return Path(raw).resolve() if raw else project_root() / "evals"


class Generation(BaseModel):
    """Generation parameters passed to chat.completions.create."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(0.0, ge=0, le=2)
    max_tokens: int | None = Field(64, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: list[str] | None = None

    def merged(self, other: Generation | None) -> Generation:
        """These parameters, overridden by the ones `other` sets explicitly."""
        if other is None:
            return self
        return self.model_copy(update=other.model_dump(exclude_unset=True))


class Limits(BaseModel):
    """An endpoint's limits as evalflow enforces them in process (and across processes)."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(None, gt=0, description="requests per minute")
    tpm: int | None = Field(None, gt=0, description="tokens per minute")
    max_concurrency: int = Field(32, gt=0, description="requests in flight at most")
    timeout_s: float = Field(60.0, gt=0, description="time limit of one request")
    max_attempts: int = Field(6, ge=1, description="attempts per row, first one included")
    max_retry_s: float = Field(300.0, gt=0, description="time limit of a row's retries")


class ModelSpec(BaseModel):
    """A registered model: an id on an OpenAI-compatible endpoint."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model: str = Field(description="the model id the endpoint knows")
    endpoint: str = Field(
        "wandb", description="'wandb' (W&B Inference), 'local' (the local LLM), or a base URL"
    )
    api_key_env: str | None = Field(
        default=None, description="environment variable holding the key (wandb: WANDB_API_KEY)"
    )
    limits: Limits = Field(default_factory=Limits)
    generation: Generation | None = None
    description: str = ""
    project: str | None = Field(
        default=None,
        description="W&B project ('entity/project') W&B Inference bills; default: the run's "
        "W&B Weave project",
    )

    @field_validator("endpoint")
    @classmethod
    def _known_endpoint(cls, value: str) -> str:
        if value in ("wandb", LOCAL_ENDPOINT):
            return value
        if problem := base_url_problem(value):
            raise ValueError(f"endpoint must be 'wandb', 'local' or an http(s) base URL: {problem}")
        return value

    @property
    def key_env(self) -> str | None:
        if self.api_key_env:
            return self.api_key_env
        return "WANDB_API_KEY" if self.endpoint == "wandb" else None

    @property
    def endpoint_key(self) -> str:
        """What identifies the endpoint for shared limits: base URL (or 'local')."""
        return wandb_base_url() if self.endpoint == "wandb" else self.endpoint

    price_in: float | None = Field(
        default=None, ge=0, description="USD per million input (prompt) tokens; optional"
    )
    price_out: float | None = Field(
        default=None, ge=0, description="USD per million output (completion) tokens; optional"
    )

    def cost_of(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """What those tokens cost in USD (None when the prices are not known)."""
        if self.price_in is None or self.price_out is None:
            return None
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1e6


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class Prompt(BaseModel):
    """Messages with {field} placeholders filled from a row; few-shot examples as turns."""

    model_config = ConfigDict(extra="forbid")

    system: str | None = None
    examples: list[tuple[str, str]] = Field(default_factory=list)
    user: str = "{question}"


BUILTIN_KINDS = ("exact_match", "normalized_contains", "numeric_match", "regex", "choice")
ScorerKind = Literal[
    "exact_match", "normalized_contains", "numeric_match", "regex", "choice", "python", "judge"
]


class ScorerSpec(BaseModel):
    """A built-in scorer by kind, any weave op / weave.Scorer by dotted path, or a judge: a
    registered model grading each answer."""

    model_config = ConfigDict(extra="forbid")

    kind: ScorerKind
    name: str | None = None
    tolerance: float = 0.0
    pattern: str | None = None
    path: str | None = Field(None, description="module.attribute, for kind: python")
    # kind: judge
    model: str | None = Field(None, description="kind judge: the registered model that grades")
    base_url: str | None = Field(
        None, description="kind judge: ask the judge on this endpoint (default: its own)"
    )
    template: str | None = Field(
        None,
        description="kind judge: the grading request, with the row's fields, {input}, {target}, "
        "{output} and {instructions} (default: evalflow's own)",
    )
    system: str | None = Field(None, description="kind judge: a system message for the judge")
    instructions: str | None = Field(
        None,
        description="kind judge: how to reply, instead of evalflow's (which ask for an "
        "explanation, then a last line GRADE: C or GRADE: I, or GRADE: n on a scale)",
    )
    examples: list[tuple[str, str]] = Field(
        default_factory=list, description="kind judge: few-shot (request, grading) turns"
    )
    mode: Literal["pass_fail", "scale"] | None = Field(
        None, description="kind judge: pass_fail (default) or scale (with scale: N)"
    )
    scale: int | None = Field(None, ge=2, le=100, description="kind judge: grades 1..N")
    partial: bool = Field(False, description="kind judge, pass_fail: GRADE: P counts 0.5")
    generation: Generation | None = Field(
        None, description="kind judge: generation parameters of the judge's requests"
    )

    @model_validator(mode="after")
    def _judge_settings(self) -> ScorerSpec:
        judge_only = (
            "model",
            "base_url",
            "template",
            "system",
            "instructions",
            "scale",
            "mode",
            "generation",
        )
        if self.kind != "judge":
            given = [f for f in judge_only if getattr(self, f) is not None]
            if given or self.partial or self.examples:
                raise ValueError(f"{', '.join(given) or 'partial/examples'}: only for kind judge")
            return self
        if not self.model:
            raise ValueError("kind judge needs model: a registered model name")
        if self.scale is not None and self.mode is None:
            self.mode = "scale"
        if self.mode == "scale" and self.scale is None:
            raise ValueError("mode scale needs scale: N (grades 1 to N)")
        if self.mode != "scale" and self.scale is not None:
            raise ValueError("scale: N goes with mode: scale")
        if self.mode == "scale" and self.partial:
            raise ValueError("partial goes with mode: pass_fail")
        if self.base_url is not None and (problem := base_url_problem(self.base_url)):
            raise ValueError(f"base_url: {problem}")
        self.mode = self.mode or "pass_fail"
        return self

    @property
    def label(self) -> str:
        return self.name or (self.path.rsplit(".", 1)[-1] if self.path else self.kind)


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        description="JSONL, CSV or Parquet file (relative to the suite), weave:///, or a "
        "Hugging Face Hub file hf://datasets/OWNER/NAME/FILE"
    )
    id_field: str | None = Field(None, description="a unique row id; default: the row number")
    input_fields: list[str] = Field(default_factory=lambda: ["question"])
    target_field: str = "answer"
    choices_field: str | None = Field(
        None,
        description="multiple choice: a field holding the list of choices, shown as A) B) ... "
        "({choices} in the prompt, else appended); the target is a letter or a choice's text",
    )
    shuffle: int | None = Field(
        None, description="multiple choice: shuffle each row's choices with this seed"
    )

    @field_validator("path")
    @classmethod
    def _hub_datasets_only(cls, value: str) -> str:
        if value.startswith("hf://") and not value.startswith("hf://datasets/"):
            raise ValueError("a Hugging Face dataset is hf://datasets/OWNER/NAME/FILE")
        return value

    @model_validator(mode="after")
    def _shuffle_needs_choices(self) -> DatasetSpec:
        if self.shuffle is not None and self.choices_field is None:
            raise ValueError("shuffle needs choices_field")
        return self

    @property
    def prompt_fields(self) -> list[str]:
        """The names a prompt may use: the input fields, and `choices` for multiple choice."""
        return [*self.input_fields, *(["choices"] if self.choices_field else [])]


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    dataset: DatasetSpec
    prompt: Prompt = Field(default_factory=Prompt)
    scorers: list[ScorerSpec] = Field(default_factory=lambda: [ScorerSpec(kind="exact_match")])
    generation: Generation = Field(default_factory=Generation)
    models: list[str] = Field(default_factory=list, description="models evaluated by default")
    epochs: int = Field(1, ge=1, le=100, description="times each row is asked")
    source: Path | None = Field(None, exclude=True)

    def dataset_path(self) -> str:
        path = self.dataset.path
        remote = path.startswith(("weave:///", "hf://"))
        if remote or Path(path).is_absolute() or self.source is None:
            return path
        return str((self.source.parent / path).resolve())


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
    )


def suite_names() -> list[str]:
    return sorted(p.stem for p in evals_dir().glob("*.yaml") if p.stem != "models")


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (evals/<name>.yaml) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = evals_dir() / f"{name_or_path}.yaml"
        if not path.exists():
            raise UnknownNameError("suite", name_or_path, suite_names())
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of suite settings")
    data.setdefault("name", path.stem)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None
    return suite.model_copy(update={"source": path})


def registry_path() -> Path:
    """The model registry: EVALFLOW_MODELS if set, else models.yaml beside the suites."""
    raw = os.environ.get("EVALFLOW_MODELS")
    return Path(raw).resolve() if raw else evals_dir() / "models.yaml"


def load_registry(path: Path | None = None) -> dict[str, ModelSpec]:
    """The model registry: name -> ModelSpec."""
    path = path or registry_path()
    data = _read_yaml(path) if path.exists() else {"models": []}
    entries = data.get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected `models:` with a list of models")
    registry: dict[str, ModelSpec] = {}
    for i, entry in enumerate(entries):
        try:
            spec = ModelSpec.model_validate(entry)
        except ValidationError as exc:
            raise ConfigError(f"{path}, models[{i}]: {_describe(exc)}") from None
        if spec.name in registry:
            raise ConfigError(f"{path}: the model name {spec.name!r} is registered twice")
        registry[spec.name] = spec
    return registry


def resolve_models(
    names: list[str], registry: dict[str, ModelSpec], base_url: str | None = None
) -> list[ModelSpec]:
    """Registry entries by name; with base_url, unknown names become ad-hoc models there."""
    specs: list[ModelSpec] = []
    for name in names:
        if base_url is not None:
            known = registry.get(name)
            model_id = known.model if known else name
            limits = known.limits if known else Limits()
            specs.append(
                ModelSpec(
                    name=name,
                    model=model_id,
                    endpoint=check_base_url(base_url),
                    api_key_env=known.api_key_env if known else None,
                    limits=limits,
                    generation=known.generation if known else None,
                )
            )
        elif name in registry:
            specs.append(registry[name])
        else:
            raise UnknownNameError("model", name, list(registry))
    return specs


def usable_models(
    registry: dict[str, ModelSpec], names: list[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The named (default: all) registered models whose key is available here, and why the
    others are not."""
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    for spec in resolve_models(names or list(registry), registry):
        env = spec.key_env
        if env and not os.environ.get(env):
            skipped[spec.name] = f"its key is not set ({env})"
        else:
            chosen.append(spec.name)
    return chosen, skipped


class _Choices:
    """Lists the names that exist when a schema is made (`prefect deploy` makes the deployment's
    form from it), while validation stays a plain string: a name made later is still accepted
    when the flow is called directly, and an unknown one gets our error naming the known ones."""

    def __init__(self, names: Callable[[], list[str]]) -> None:
        self.names = names

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        out = dict(handler(schema))
        try:
            names = self.names()
        except ConfigError:  # a broken evals folder: a free text field, the run will say why
            names = []
        if names:
            out["enum"] = names
        return out


def _model_names() -> list[str]:
    return sorted(load_registry())


SuiteName = Annotated[str, _Choices(suite_names)]
"""A suite's name; the Prefect UI shows the suites of evals/ as a choice."""

ModelName = Annotated[str, _Choices(_model_names)]
"""A registered model's name; the Prefect UI shows the registry as a choice."""
