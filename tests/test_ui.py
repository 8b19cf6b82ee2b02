"""The whole local stack (`evalflow up --background` ... `evalflow down`) driven through the
Prefect UI in a real headless browser: Debian's chromium under Playwright. The stack is started
with an alert webhook (a local receiver), so `evalflow up` also sets up the regression alert."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, sync_playwright

from evalflow.endpoints import SimEndpoint
from evalflow.endpoints.process import free_port, port_in_use
from evalflow.endpoints.sim import unit_hash
from tests.receiver import Receiver
from tests.suites import answer_key, questions, write_suite

CHROMIUM = "/usr/bin/chromium"
# As root, on a machine without network: no sandbox, no background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROWS = questions(12)
NIGHT_ROWS = questions(120)  # the nightly's suite: enough rows for a drop to be significant
Stack = tuple[str, dict[str, str], Receiver]


def evalflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def stack(tmp_path: Path, sim: SimEndpoint) -> Iterator[Stack]:
    """`evalflow up --background` with three suites on the simulated endpoint and an alert
    webhook (a local receiver); down afterwards."""
    evals = tmp_path / "evals"
    write_suite(evals, "ui-first", ROWS, sim.base_url, {"oracle": {}})
    write_suite(evals, "ui-second", ROWS, sim.base_url, {"oracle": {}})
    write_suite(evals, "ui-nightly", NIGHT_ROWS, sim.base_url, {"oracle": {}, "sim-good": {}})
    sim.configure(answer_key=answer_key(NIGHT_ROWS), latency_ms=20)
    port = free_port()
    hook = Receiver()
    env = {
        **os.environ,
        "EVALFLOW_HOME": str(tmp_path / "home"),
        "EVALFLOW_EVALS_DIR": str(evals),
        "EVALFLOW_ALERT_WEBHOOK": hook.url,
    }
    env.pop("PREFECT_API_URL", None)
    started = evalflow(
        "up", "--port", str(port), "--llm-port", str(free_port()), "--background", env=env
    )
    try:
        assert started.returncode == 0, started.stderr
        assert f"Prefect UI at http://127.0.0.1:{port}" in started.stdout
        assert "regression alerts: automation" in started.stdout
        assert hook.url not in started.stdout + started.stderr
        yield f"http://127.0.0.1:{port}", env, hook
    finally:
        hook.close()
        stopped = evalflow("down", env=env)
        assert stopped.returncode == 0, stopped.stderr
    assert "stopped 3 process(es)" in stopped.stdout  # the server, the local LLM, the worker
    assert not port_in_use("127.0.0.1", port)


def open_run_form(page: Page, ui: str) -> None:
    page.goto(f"{ui}/deployments", wait_until="networkidle")
    page.get_by_role("link", name="evaluate", exact=True).first.click()
    page.wait_for_url("**/deployments/deployment/**")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.get_by_role("button", name="Submit").wait_for()


def field(page: Page, label: str) -> Locator:
    return (
        page.locator(".schema-form-property")
        .filter(has=page.get_by_text(f"{label} (Optional)", exact=True))
        .last
    )


def test_a_run_started_from_the_prefect_ui_form_completes(
    stack: Stack, sim: SimEndpoint, tmp_path: Path
) -> None:
    ui, _, _ = stack
    assert shutil.which(CHROMIUM), "install Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            open_run_form(page, ui)
            suite = field(page, "suite")
            control = suite.locator(".p-select-button__control")  # a choice of evals/ suites
            control.click()
            control.press("ArrowDown")  # opens the list (a click only focuses it headless)
            page.get_by_role("option").first.wait_for()
            options = [o.inner_text().strip() for o in page.get_by_role("option").all()]
            assert options == ["ui-first", "ui-nightly", "ui-second"]
            page.get_by_role("option", name="ui-second").click()
            limit = field(page, "limit")
            limit.get_by_role("button", name="int", exact=True).click()
            limit.locator("input").fill("5")
            name = f"from-the-ui-{os.getpid()}"
            run_name = page.locator(".p-label").filter(has=page.get_by_text("Run Name", exact=True))
            run_name.locator("input").first.fill(name)
            page.screenshot(path=tmp_path / "form.png", full_page=True)
            page.get_by_role("button", name="Submit").click()

            page.wait_for_url("**/deployments/deployment/**Runs")  # back to the deployment
            page.get_by_role("link", name=name, exact=True).first.click()
            page.wait_for_url("**/runs/flow-run/**")
            run_id = page.url.rstrip("/").split("/")[-1]
            page.get_by_text("Completed", exact=True).first.wait_for(
                timeout=240_000
            )  # the state badge
            page.screenshot(path=tmp_path / "completed.png", full_page=True)
        except Exception:
            page.screenshot(path=tmp_path / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
    run = httpx.get(f"{ui}/api/flow_runs/{run_id}", timeout=10).json()
    assert run["state"]["type"] == "COMPLETED"
    assert run["parameters"]["suite"] == "ui-second" and run["parameters"]["limit"] == 5
    assert sim.stats()["by_status"] == {"200": 5}  # five rows, one model, asked once each
    print(f"screenshots: {tmp_path / 'form.png'}, {tmp_path / 'completed.png'}")


def test_a_cli_run_while_the_stack_is_up_runs_on_its_server(stack: Stack, sim: SimEndpoint) -> None:
    ui, env, _ = stack
    sim.reset()
    out = evalflow("run", "ui-first", "--limit", "3", env=env)
    assert out.returncode == 0, out.stderr
    assert f"on the local stack: {ui}" in out.stderr
    runs = httpx.post(f"{ui}/api/flow_runs/filter", json={"limit": 50}, timeout=10).json()
    mine = [r for r in runs if r["parameters"].get("suite") == "ui-first"]
    assert len(mine) == 1 and mine[0]["state"]["type"] == "COMPLETED"
    assert sim.stats()["by_status"] == {"200": 3}


def fits(table: Locator) -> bool:
    """Whether a rendered table shows all its columns (nothing scrolled out of its box)."""
    return bool(table.evaluate("t => t.parentElement.scrollWidth <= t.parentElement.clientWidth"))


def run_nightly(ui: str, day: str) -> dict[str, object]:
    """A run of the nightly deployment as of `day` (YYYYMMDD, the worker's EVALFLOW_RUN_DAY
    for this run), on the ui-nightly suite with sim-good; waits for it to end."""
    api = f"{ui}/api"
    deployment = httpx.get(f"{api}/deployments/name/nightly-evals/nightly-evals", timeout=10)
    created = httpx.post(
        f"{api}/deployments/{deployment.json()['id']}/create_flow_run",
        json={
            "parameters": {"suites": ["ui-nightly"], "models": ["sim-good"]},
            "job_variables": {"env": {"EVALFLOW_RUN_DAY": day}},
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run: dict[str, object] = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        state = run.get("state") or {}
        if isinstance(state, dict) and state.get("type") in FINAL:
            return run
        time.sleep(2)
    raise AssertionError(f"nightly run {run_id} did not end in 300 s")


FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def test_a_nightly_regression_shows_in_its_what_changed_artifact_and_alerts(
    stack: Stack, sim: SimEndpoint, tmp_path: Path
) -> None:
    ui, _, hook = stack
    sim.configure(answer_key=answer_key(NIGHT_ROWS), models={"sim-good": 0.9}, latency_ms=5)
    first = run_nightly(ui, "20250301")
    sim.configure(answer_key=answer_key(NIGHT_ROWS), models={"sim-good": 0.7}, latency_ms=5)
    second = run_nightly(ui, "20250302")
    for run in (first, second):
        assert run["state"]["type"] == "COMPLETED", run["state"]  # type: ignore[index]
    assert second["name"] == "nightly 2025-03-02: 1 suite x 1 model"
    worse = sum(0.7 <= unit_hash("answer", "sim-good", r["question"]) < 0.9 for r in NIGHT_ROWS)
    delta = f"{-worse / len(NIGHT_ROWS):+.3f}"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{ui}/runs/flow-run/{second['id']}", wait_until="networkidle")
            page.get_by_text("nightly 2025-03-02: 1 suite x 1 model").first.wait_for()
            page.get_by_text("Artifacts", exact=True).first.click()
            page.get_by_text("what-changed", exact=True).first.click()
            page.wait_for_url("**/artifacts/artifact/**")
            page.get_by_text("REGRESSION", exact=True).first.wait_for()
            page.screenshot(path=tmp_path / "what-changed.png", full_page=True)
            shown = page.locator("body").inner_text()
            assert fits(page.locator("table").first)  # no column hidden past the edge
            latest = httpx.post(
                f"{ui}/api/artifacts/latest/filter",
                json={"artifacts": {"key": {"any_": ["ui-nightly-summary"]}}},
                timeout=10,
            ).json()[0]["latest_id"]
            page.goto(f"{ui}/artifacts/artifact/{latest}", wait_until="networkidle")
            page.get_by_text("sim-good", exact=True).first.wait_for()
            page.screenshot(path=tmp_path / "summary.png", full_page=True)
            summary = page.locator("body").inner_text()
            assert fits(page.locator("table").first)
        except Exception:
            page.screenshot(path=tmp_path / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
    assert "Regression: ui-nightly / sim-good / exact_match" in shown
    assert delta in shown
    tonight = sum(unit_hash("answer", "sim-good", r["question"]) < 0.7 for r in NIGHT_ROWS)
    assert f"{tonight / len(NIGHT_ROWS):.3f} [" in summary  # the evaluation's own figure
    deadline = time.monotonic() + 30
    while not hook.posts and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    assert len(hook.posts) == 1 and "regression in ui-nightly / sim-good" in hook.posts[0]["text"]
    print(f"screenshot: {tmp_path / 'what-changed.png'}")
