"""Plan a run before anything is sent: the suite, models, rows and scorers checked, the run's
id, whether it is a leaderboard entry. The CLI plans a run before Prefect starts (a user's
mistake answers in seconds) and the flow plans it again (the same checks, for UI runs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from evalflow.config import ModelSpec, Suite, load_registry, load_suite, resolve_models
from evalflow.dataset import Row, RowStore, store_rows
from evalflow.errors import ConfigError
from evalflow.prompting import check_prompt
from evalflow.runs import RunParameters, load_parameters, make_run_id, same_definition
from evalflow.scorer_checks import check_settings, needs_import, row_fields
from evalflow.storage import check_storage
from evalflow.targets import LOCAL_LLM_ENV, Target


class RunRequest(BaseModel):
    """What a user asks for: the evaluate flow's parameters (and the CLI's options)."""

    model_config = ConfigDict(extra="forbid")

    suite: str = "qa-basics"
    models: list[str] | None = None
    limit: int | None = Field(None, ge=1)
    chunk_size: int = Field(200, ge=1, le=10_000)
    concurrency: int | None = Field(None, ge=1, le=1024)
    base_url: str | None = None
    dataset: str | None = None
    max_error_fraction: float = Field(0.1, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, gt=0)
    weave_project: str | None = None
    retry_errors_of: str | None = None
    fresh: bool = False
    leaderboard: bool = False
    publish_leaderboard: bool = True
    epochs: int | None = Field(None, ge=1, le=100)


# Chunks a run works on at most at once: the evaluate flow's task runner threads.
CHUNK_WORKERS = 4
# What `evalflow run` asks ahead of the flow's tasks (evalflow/early_answers.py): chunks of
# this many rows in all, or CHUNK_WORKERS chunks if they hold more. The flow starts 5-6 s
# after the first request on a cold temporary server. Held to CHUNK_WORKERS chunks of the
# default 200 rows, the asking stopped at 800 rows until it did: 1,000 rows at 200 ms were
# answered in 7.2-8.5 s (three runs), 7.4-7.5 s asked ahead so (chunks of 500: 6.9-7.4 s).
EARLY_ROWS = 5_000
# Chunks submitted ahead of those finished (their rows read, not yet taken by a task).
CHUNKS_AHEAD = 2 * CHUNK_WORKERS
# Chunks at once when no judge grades them and one chunk fills each model's slots: a model's
# chunks come one after another, so two keep its requests in flight across a chunk's end (the
# same in-loop rate as four at 200 ms: 152 and 151 rows/s), and fewer event loops contend for
# the GIL (at latency 0, about 7% less CPU a row than four: bench.scale at 20,000 rows).
FILLING_CHUNKS = 2


@dataclass
class RunPlan:
    """A checked run: everything it will send is known, nothing is sent yet."""

    run_id: str
    request: RunRequest
    parameters: RunParameters
    suite: Suite
    specs: list[ModelSpec]
    rows: RowStore  # every row, kept compactly: read by chunks() or by iterating
    full: bool  # the suite's own dataset, every row: a leaderboard entry
    judges: dict[str, ModelSpec] = field(default_factory=dict)  # judge scorer label -> model

    @property
    def leaderboard_entry(self) -> bool:
        """Whether the run's evaluations belong on the suite's leaderboard."""
        return self.full or self.request.leaderboard

    @property
    def publishes(self) -> bool:
        """Whether the run publishes the leaderboard itself (the nightly's children leave it
        to the nightly, which publishes each suite once)."""
        return self.leaderboard_entry and self.request.publish_leaderboard

    @property
    def endpoint_specs(self) -> list[ModelSpec]:
        """Every model the run sends requests to: the answering models, then the judges."""
        return [*self.specs, *self.judges.values()]

    def split_targets(self, targets: list[Target]) -> tuple[list[Target], dict[str, Target]]:
        """`targets` of `endpoint_specs`, as the answering models' and the judges' by label."""
        answering = targets[: len(self.specs)]
        return answering, dict(zip(self.judges, targets[len(self.specs) :], strict=True))

    def chunks_at_once(self, answering: list[Target], judged: bool) -> int:
        """How many chunks the flow submits at once (running or queued): FILLING_CHUNKS when
        no judge grades the answers and a chunk holds at least as many requests as each
        answering model keeps in flight; otherwise CHUNKS_AHEAD (a chunk's task then waits on
        its judge's pace, or on its own few rows, while the next chunks' answers go)."""
        fills = all(t.spec.limits.max_concurrency <= self.parameters.chunk_size for t in answering)
        return FILLING_CHUNKS if fills and not judged else CHUNKS_AHEAD

    def early_chunks(self) -> int:
        """How many chunks `evalflow run` asks ahead of the flow's tasks at most."""
        return max(CHUNK_WORKERS, EARLY_ROWS // self.parameters.chunk_size)

    def chunks(self) -> Iterator[list[Row]]:
        """The rows in order, a list of `chunk_size` rows at a time (made as they are read:
        one chunk's rows are held, not every row)."""
        return self.rows.chunks(self.parameters.chunk_size)

    def scope(self) -> str:
        """What the run covers, as a person reads it."""
        if self.full:
            return f"all {len(self.rows)} rows"
        if self.parameters.dataset:
            return f"{len(self.rows)} rows of {self.parameters.dataset}"
        return f"the first {len(self.rows)} rows (--limit)"


def _with_concurrency(specs: list[ModelSpec], concurrency: int | None) -> list[ModelSpec]:
    if concurrency is None:
        return specs
    return [
        s.model_copy(
            update={"limits": s.limits.model_copy(update={"max_concurrency": concurrency})}
        )
        for s in specs
    ]


def _billed_project(specs: list[ModelSpec], weave_project: str | None) -> list[ModelSpec]:
    """W&B Inference models without a `project` bill the run's W&B Weave project."""
    project = weave_project or os.environ.get("EVALFLOW_WEAVE_PROJECT") or ""
    if not project or project.startswith("local/"):
        return specs
    return [
        s.model_copy(update={"project": project})
        if s.endpoint == "wandb" and s.project is None
        else s
        for s in specs
    ]


def _check_labels(suite: Suite) -> None:
    """Scorer labels name result columns and a judge's journal: two scorers can't share one."""
    labels = [s.label for s in suite.scorers]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ConfigError(
            f"suite {suite.name!r}: scorers share the name {', '.join(twice)}; give each a "
            f"`name:` of its own"
        )


def _parameters(request: RunRequest) -> RunParameters:
    """The run's defining parameters: the request's, or those of the run it retries."""
    if not request.retry_errors_of:
        return RunParameters(
            suite=request.suite,
            models=request.models,
            limit=request.limit,
            dataset=request.dataset,
            base_url=request.base_url,
            weave_project=request.weave_project,
            chunk_size=request.chunk_size,
            concurrency=request.concurrency,
            epochs=request.epochs,
        )
    saved = load_parameters(request.retry_errors_of)
    if saved.suite != request.suite:
        raise ConfigError(
            f"run {request.retry_errors_of} evaluated suite {saved.suite!r}, not "
            f"{request.suite!r}: run `evalflow run {saved.suite} --retry-errors "
            f"{request.retry_errors_of}`"
        )
    return saved


def plan_run(request: RunRequest) -> RunPlan:
    """Check the suite, models, dataset, prompt and scorers, and name the run; send nothing."""
    parameters = _parameters(request)
    suite = load_suite(parameters.suite)
    if parameters.epochs is not None:
        suite = suite.model_copy(update={"epochs": parameters.epochs})
    names = parameters.models or suite.models
    if not names:
        raise ConfigError(f"suite {suite.name!r} lists no models: name some with -m MODEL")
    specs = resolve_models(names, load_registry(), parameters.base_url)
    specs = _billed_project(
        _with_concurrency(specs, parameters.concurrency), parameters.weave_project
    )
    check_prompt(suite.prompt, suite.dataset.prompt_fields)
    _check_labels(suite)
    rows = store_rows(parameters.dataset or suite.dataset_path(), suite.dataset, parameters.limit)
    fields = row_fields(rows)
    if needs_import(suite):  # a Python scorer: imported (with weave) after the quicker checks
        from evalflow.scorers import check_scorers

        check_scorers(suite, fields)
    else:  # weave is imported later, while the first rows are asked (early_traces.py)
        check_settings(suite, fields)
    judges = _judges(suite, parameters.weave_project)
    if request.max_cost is not None:
        _check_priced([*specs, *judges.values()])
    run_id = make_run_id(
        suite.name,
        {
            "suite": suite.model_dump(),
            "dataset": parameters.dataset or suite.dataset_path(),
            "weave_project": parameters.weave_project,
            "models": [s.model_dump(exclude=NOT_DEFINING) for s in specs],
            "judges": {label: s.model_dump(exclude=NOT_DEFINING) for label, s in judges.items()},
            "limit": parameters.limit,
        },
        (r.id for r in rows),
    )
    if request.retry_errors_of:
        if not same_definition(run_id, request.retry_errors_of):
            raise ConfigError(
                f"run {request.retry_errors_of}'s suite, rows or models changed since it ran "
                f"(its dataset or the model registry was edited): its failed rows can't be "
                f"re-run alone. Start a new run instead."
            )
        run_id = request.retry_errors_of
    full = parameters.dataset is None and (parameters.limit is None or len(rows) < parameters.limit)
    check_storage()  # EVALFLOW_STORAGE malformed or unreachable: said now, nothing sent
    return RunPlan(run_id, request, parameters, suite, specs, rows, full, judges)


NOT_DEFINING = {"description", "price_in", "price_out"}  # a model's fields a run ignores


def _check_priced(specs: list[ModelSpec]) -> None:
    """--max-cost needs every model's prices (the answering models' and the judges')."""
    unpriced = sorted({s.name for s in specs if s.price_in is None or s.price_out is None})
    if unpriced:
        raise ConfigError(
            f"--max-cost needs the prices of every model: {', '.join(unpriced)} has none "
            f"(price_in and price_out, USD per million tokens, in the model registry)"
        )


def _judges(suite: Suite, weave_project: str | None) -> dict[str, ModelSpec]:
    """Each judge scorer's model: registered, on its own endpoint (a run's --base-url is for
    the answering models) unless the scorer names a base_url."""
    registry = load_registry()
    judges: dict[str, ModelSpec] = {}
    for scorer in suite.scorers:
        if scorer.kind != "judge" or scorer.model is None:
            continue
        if scorer.base_url is None and scorer.model not in registry:
            raise ConfigError(
                f"scorer {scorer.label!r}: its judge {scorer.model!r} is not a registered model "
                f"(registered: {', '.join(sorted(registry)) or 'none'}); register it with "
                f"`evalflow models add` or give the scorer a base_url"
            )
        (spec,) = resolve_models([scorer.model], registry, scorer.base_url)
        judges[scorer.label] = _billed_project([spec], weave_project)[0]
    return judges


@contextmanager
def reachable(specs: list[ModelSpec]) -> Iterator[list[Target]]:
    """Where each model is answered: the local LLM is started if a model needs it (and
    stopped after), and every endpoint checked (evalflow/preflight.py) before the body."""
    from evalflow.endpoints import local_llm
    from evalflow.preflight import check_endpoints

    with ExitStack() as stack:
        needs_llm = any(s.endpoint == "local" for s in specs)
        local_url = (
            stack.enter_context(local_llm())
            if needs_llm and not os.environ.get(LOCAL_LLM_ENV)
            else None
        )
        targets = [Target.of(spec, local_url) for spec in specs]
        check_endpoints(targets)
        yield targets
