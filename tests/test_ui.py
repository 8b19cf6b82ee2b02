"""The whole local stack (`evalflow up --background` ... `evalflow down`) driven through the
Prefect UI in a real headless browser: Debian's chromium under Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, sync_playwright

from evalflow.endpoints import SimEndpoint
from evalflow.endpoints.process import free_port, port_in_use
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


def evalflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def stack(tmp_path: Path, sim: SimEndpoint) -> Iterator[tuple[str, dict[str, str]]]:
    """`evalflow up --background` with two suites on the simulated endpoint; down afterwards."""
    evals = tmp_path / "evals"
    write_suite(evals, "ui-first", ROWS, sim.base_url, {"oracle": {}})
    write_suite(evals, "ui-second", ROWS, sim.base_url, {"oracle": {}})
    sim.configure(answer_key=answer_key(ROWS), latency_ms=20)
    port = free_port()
    env = {
        **os.environ,
        "EVALFLOW_HOME": str(tmp_path / "home"),
        "EVALFLOW_EVALS_DIR": str(evals),
    }
    env.pop("PREFECT_API_URL", None)
    started = evalflow(
        "up", "--port", str(port), "--llm-port", str(free_port()), "--background", env=env
    )
    try:
        assert started.returncode == 0, started.stderr
        assert f"Prefect UI at http://127.0.0.1:{port}" in started.stdout
        yield f"http://127.0.0.1:{port}", env
    finally:
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
    stack: tuple[str, dict[str, str]], sim: SimEndpoint, tmp_path: Path
) -> None:
    ui, _ = stack
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
            assert options == ["ui-first", "ui-second"]
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


def test_a_cli_run_while_the_stack_is_up_runs_on_its_server(
    stack: tuple[str, dict[str, str]], sim: SimEndpoint
) -> None:
    ui, env = stack
    sim.reset()
    out = evalflow("run", "ui-first", "--limit", "3", env=env)
    assert out.returncode == 0, out.stderr
    assert f"on the local stack: {ui}" in out.stderr
    runs = httpx.post(f"{ui}/api/flow_runs/filter", json={"limit": 50}, timeout=10).json()
    mine = [r for r in runs if r["parameters"].get("suite") == "ui-first"]
    assert len(mine) == 1 and mine[0]["state"]["type"] == "COMPLETED"
    assert sim.stats()["by_status"] == {"200": 3}
