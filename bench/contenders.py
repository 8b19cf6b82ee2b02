"""The contenders that several benchmarks run next to evalflow."""

from __future__ import annotations

import asyncio


def plain_weave_evaluation(
    base_url: str, rows: list[dict[str, str]], name: str, max_retries: int = 0
) -> int:
    """A plain weave.Evaluation (parallelism from WEAVE_PARALLELISM) whose model calls the
    endpoint with the openai client; traced in the local store `local/<name>`. Returns its
    failed rows."""
    import weave
    from openai import AsyncOpenAI

    from evalflow.weave_setup import flush_weave, init_weave

    init_weave(f"local/{name}")
    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=max_retries)
    failures: list[str] = []

    class Endpoint(weave.Model):
        @weave.op
        async def predict(self, question: str) -> str:
            try:
                answer = await client.chat.completions.create(
                    model="oracle", messages=[{"role": "user", "content": question}]
                )
            except Exception as exc:
                failures.append(type(exc).__name__)
                raise
            return answer.choices[0].message.content or ""

    @weave.op
    def exact_match(answer: str, output: str) -> dict[str, bool]:
        return {"correct": answer == output}

    evaluation = weave.Evaluation(
        name=name, dataset=weave.Dataset(name=name, rows=rows), scorers=[exact_match]
    )
    asyncio.run(evaluation.evaluate(Endpoint(name="oracle")))
    flush_weave()
    return len(failures)
