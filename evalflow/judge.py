"""Judge scorers: a registered model grades each answer, on the same path as the answers.

A judge's requests go through an `Asker` (evalflow/inference.py) like any answer: the judge
model's own limiter (its endpoint, model id and limits), the tenacity policy, Weave tracing
(the openai integration), the run's token budget and progress (counted apart: `judged`), and
a journal of its own (runs/<id>/judgements/<scorer>/<model>/<chunk>.jsonl) keyed by the digest
of the grading request, so a run started again after a crash pays no judge request twice. A
reply without a readable grade is journaled but not reused: a rerun (or --retry-errors) asks
again.

Each row is judged as soon as it is answered, in the same chunk task and event loop: the
answering model and its judges work at the same time, each at its own endpoint's pace, so a
judged suite takes as long as its slower endpoint needs, not the sum of both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evalflow.config import Generation, ModelSpec, ScorerSpec, Suite
from evalflow.dataset import Row
from evalflow.grading import Grade, grading_messages, parse_grade
from evalflow.inference import Answer, Asker, Journal, gather_in_order
from evalflow.run_context import RunContext
from evalflow.targets import Target

# A judge explains before it grades: room for that, read greedily unless the model or the
# scorer says otherwise.
JUDGE_GENERATION = Generation(temperature=0.0, max_tokens=512)


@dataclass
class Judgement:
    """A judge scorer's grading of one answer (a row of a model, one epoch), or why none."""

    scorer: str
    model: str
    row_id: str
    epoch: int
    grade: str | None
    score: float | None
    explanation: str
    error: str | None
    tokens: int

    def output(self) -> dict[str, Any]:
        """What results.parquet keeps (`scorer_output:<label>`) and Weave records per row."""
        out: dict[str, Any] = {
            "grade": self.grade,
            "score": self.score,
            "explanation": self.explanation,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class Judge:
    """A judge scorer of the suite, where its judge model is reached, and the journal of its
    gradings of one model's chunk."""

    scorer: ScorerSpec
    target: Target
    journal: Journal | None = None
    # Blocks until the chunk's judge requests fit a limit shared across processes (Prefect's):
    # called once, in a thread, before the chunk's first judge request is sent.
    admit: Callable[[], None] | None = None


def judge_generation(scorer: ScorerSpec, judge: ModelSpec) -> Generation:
    """The judge's generation parameters: greedy with room to explain, then the judge model's
    own, then the scorer's."""
    return JUDGE_GENERATION.merged(judge.generation).merged(scorer.generation)


def judgement(scorer: ScorerSpec, answer: Answer, reply: Answer) -> Judgement:
    """The judge's reply to a grading request read (strictly), or why it gave no grade."""
    read = (
        Grade(None, None, "", f"the judge's request failed: {reply.error_class}: {reply.error}")
        if reply.error is not None
        else parse_grade(reply.output, scorer)
    )
    return Judgement(
        scorer=scorer.label,
        model=answer.model,
        row_id=answer.row_id,
        epoch=answer.epoch,
        grade=read.grade,
        score=read.score,
        explanation=read.explanation,
        error=read.error,
        tokens=reply.prompt_tokens + reply.completion_tokens,
    )


def _grader(judge: Judge, suite: Suite, model: str, run: RunContext) -> Asker:
    scorer = judge.scorer
    return Asker(
        judge.target,
        judge_generation(scorer, judge.target.spec),
        suite.name,
        run,
        judge.journal,
        kind="judge",
        reusable=lambda saved: parse_grade(saved.output, scorer).error is None,
        attributes={"evalflow.scorer": scorer.label, "evalflow.judged_model": model},
    )


class _Admission:
    """A judge's shared limit, taken once for the chunk when its first request must be sent."""

    def __init__(self, admit: Callable[[], None] | None) -> None:
        self.admit = admit
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            if self.admit is not None:
                await asyncio.to_thread(self.admit)
                self.admit = None


async def _graded(
    grader: Asker,
    judge: Judge,
    admission: _Admission,
    row: Row,
    question: str,
    answer: Answer,
    run: RunContext,
) -> Judgement:
    scorer = judge.scorer
    messages = grading_messages(
        scorer, {**row.record, "row_id": row.id}, question, row.target, str(answer.output)
    )
    if grader.saved(row, messages, answer.epoch) is None:
        await admission.wait()
    reply = await grader.ask(row, messages, answer.epoch)
    judged = judgement(scorer, answer, reply)
    if judged.error is not None and reply.error is None:
        run.progress.add(judge_errors=1)  # answered, but no grade in the reply
    return judged


async def answer_and_judge(
    rows: list[Row],
    answering: Asker,
    messages: list[list[dict[str, str]]],
    epochs: list[int],
    judges: list[Judge],
    suite: Suite,
    run: RunContext,
) -> tuple[list[Answer], list[Judgement]]:
    """Every request answered (in order) by `answering`, and each answered one graded by
    every judge as soon as it is answered; a failed answer is not judged."""
    model = answering.target.spec.name
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(answering)
        graders = [
            await stack.enter_async_context(_grader(judge, suite, model, run)) for judge in judges
        ]
        admissions = [_Admission(judge.admit) for judge in judges]

        async def one(
            row: Row, msgs: list[dict[str, str]], epoch: int
        ) -> tuple[Answer, list[Judgement]]:
            answer = await answering.ask(row, msgs, epoch)
            if answer.error is not None or answer.output is None or not graders:
                return answer, []
            run.progress.add(judge_total=len(graders))
            question = msgs[-1]["content"]
            judged = await gather_in_order(
                [
                    _graded(grader, judge, admission, row, question, answer, run)
                    for grader, judge, admission in zip(graders, judges, admissions, strict=True)
                ]
            )
            return answer, judged

        results = await gather_in_order(
            [one(*request) for request in zip(rows, messages, epochs, strict=True)]
        )
    return [answer for answer, _ in results], [j for _, judged in results for j in judged]
