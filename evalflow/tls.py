"""One TLS context for every HTTP client of this process: the one httpx builds by default
(SSL_CERT_FILE and SSL_CERT_DIR honoured), built once. Loading the CA bundle costs about 25 ms
a context: once per client (so per chunk) before, and three times before `evalflow run` sent
its first request (the stack's health, the endpoints' check, the first chunk's client)."""

from __future__ import annotations

import functools
import ssl


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """The process's TLS context (verifying, with the default CA bundle)."""
    import httpx2

    return httpx2.create_ssl_context()
