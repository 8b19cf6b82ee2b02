"""Acknowledge a response's headers at once: openai's aiohttp transport, given an aiohttp
session whose trace sets TCP_QUICKACK on the connection's socket when a response's headers
are in.

Why: a server that writes a response's headers and body in two writes with Nagle's algorithm
on (Python's `http.server`, and the servers built on it) holds the body back until the client
acknowledges the headers. Linux delays that acknowledgement, up to 40 ms, once a kept-alive
connection is in its request and response rhythm: 44 ms of every request, measured on such an
endpoint (bench/RESULTS.md, Whole process). Setting TCP_QUICKACK then sends the pending
acknowledgement at once: 0.5 ms a request instead of 44 at zero latency. Against a server that
writes a response at once, it costs one system call a request and changes nothing else.

The internals relied on: the `client` attribute of openai's vendored httpx-aiohttp transport
(`openai._vendor.httpx_aiohttp.transport.AiohttpTransport`), a callable that makes the
transport's aiohttp session, and httpx2's `AsyncClient._init_transport`, which makes the client's
transport (the vendored client overrides it too). The client here is openai's
`DefaultAioHttpClient`, whose transport, once made as openai makes it, gets a `client` that makes
the session with the connector the transport would give it (its connection limit, keep-alive
expiry and TLS context) and the trace. Proxies from the environment still apply: their requests
keep openai's own transport. Otherwise (another openai version, or an internal changed):
openai's `DefaultAioHttpClient` as shipped, with a warning; without TCP_QUICKACK (systems other
than Linux), openai's client as shipped, silently.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import socket
import ssl
from typing import Any

import httpx2

from evalflow.patches._gate import stand_aside, version_problem

DISTRIBUTION = "openai"
VERIFIED = ">=3.57,<3.58"
PATCH = "openai: responses' headers acknowledged at once (TCP_QUICKACK)"
_MODULE = "openai._vendor.httpx_aiohttp.transport"
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only
_TCP = (socket.AF_INET, socket.AF_INET6)


def drift() -> list[str]:
    """What differs upstream from the internals this patch relies on (empty: nothing)."""
    import aiohttp
    import httpx2
    import openai

    problems: list[str] = []
    try:
        module = importlib.import_module(_MODULE)
    except ImportError as exc:
        return [f"{_MODULE} does not import: {exc}"]
    transport = getattr(module, "AiohttpTransport", None)
    if transport is None:
        return [f"{_MODULE}.AiohttpTransport is gone"]
    init = inspect.getsource(transport.__init__)
    for kept in ("client", "ssl_context", "limits", "uds", "local_address", "socket_options"):
        if f"self.{kept} = " not in init:
            problems.append(f"AiohttpTransport.__init__ no longer sets `self.{kept}`")
    get_client = getattr(transport, "get_client", None)
    if get_client is None or "self.client()" not in inspect.getsource(get_client):
        problems.append("AiohttpTransport.get_client no longer calls its `client` callable")
    handle = getattr(transport, "handle_async_request", None)
    if handle is None or "self.get_client()" not in inspect.getsource(handle):
        problems.append("AiohttpTransport.handle_async_request no longer uses get_client")
    made = getattr(openai.DefaultAioHttpClient, "_init_transport", None)
    if made is None or "AiohttpTransport(" not in inspect.getsource(made):
        problems.append("DefaultAioHttpClient._init_transport no longer makes an AiohttpTransport")
    if "self._transport = self._init_transport(" not in inspect.getsource(
        httpx2.AsyncClient.__init__
    ):
        problems.append("httpx2.AsyncClient no longer makes its transport with _init_transport")
    if "response" not in getattr(aiohttp.TraceRequestEndParams, "__annotations__", {}):
        problems.append("aiohttp's TraceRequestEndParams has no `response`")
    return problems


@functools.cache
def _problems() -> tuple[str, ...]:
    problem = version_problem(DISTRIBUTION, VERIFIED)
    if problem:
        return (problem,)
    try:
        return tuple(drift())
    except (OSError, TypeError) as exc:  # no source to read (installed without it)
        return (f"the internals' source could not be read: {exc}",)


def acknowledge_at_once(response: Any) -> None:
    """Send the acknowledgement of what the response's connection has received now."""
    connection = response.connection
    transport = connection.transport if connection is not None else None
    sock = transport.get_extra_info("socket") if transport is not None else None
    if _QUICKACK is None or sock is None or sock.family not in _TCP:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
    except OSError:  # the connection is closing: nothing to acknowledge
        return


async def _on_request_end(_session: Any, _context: Any, params: Any) -> None:
    acknowledge_at_once(params.response)


def _session(limits: httpx2.Limits, context: ssl.SSLContext) -> Any:
    import aiohttp

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(_on_request_end)
    connector = aiohttp.TCPConnector(
        limit=100 if limits.max_connections is None else limits.max_connections,  # as upstream
        keepalive_timeout=limits.keepalive_expiry,
        ssl=context,
    )
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace])


def _plain_tcp(transport: Any) -> bool:
    """Whether the transport makes its own session for plain TCP connections (no session given,
    no Unix socket, local address or socket options)."""
    extras = (transport.uds, transport.local_address, transport.socket_options)
    return transport.client is None and not any(extras)


@functools.cache
def _acking_client() -> type[Any]:
    import openai

    transport_type = importlib.import_module(_MODULE).AiohttpTransport

    class AckingAioHttpClient(openai.DefaultAioHttpClient):
        """openai's aiohttp client; its own transport's session acknowledges at once."""

        def _init_transport(self, *args: Any, **kwargs: Any) -> Any:
            transport: Any = super()._init_transport(*args, **kwargs)
            if type(transport) is transport_type and _plain_tcp(transport):
                limits, context = transport.limits, transport.ssl_context
                transport.client = lambda: _session(limits, context)
            return transport

    return AckingAioHttpClient


def http_client(limits: httpx2.Limits, timeout: float, context: ssl.SSLContext) -> Any:
    """openai's aiohttp client (`openai.DefaultAioHttpClient`) with these settings, its
    responses' headers acknowledged at once where the patch applies."""
    import openai

    if _QUICKACK is None:  # not Linux: nothing to ask of the system, openai's client as shipped
        return openai.DefaultAioHttpClient(limits=limits, timeout=timeout, verify=context)
    problems = _problems()
    if problems:
        stand_aside(PATCH, list(problems))
        return openai.DefaultAioHttpClient(limits=limits, timeout=timeout, verify=context)
    return _acking_client()(limits=limits, timeout=timeout, verify=context)
