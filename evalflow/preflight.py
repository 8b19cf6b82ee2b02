"""Check every endpoint before the first row is sent: reachable, the key accepted, the model
known. One GET of `<base URL>/models` per endpoint and key (not a paid request), so a dead
endpoint, a bad key or a typo in a model id answers in seconds and costs nothing.

Sent with httpx2, the HTTP library openai's client already imported: httpx (weave's and
Prefect's) imports its command-line tools too, 0.09 s of CPU more before the first row."""

from __future__ import annotations

from collections import defaultdict

import httpx2

from evalflow.errors import ConfigError, EndpointUnreachableError, FatalRequestError
from evalflow.targets import Target
from evalflow.tls import ssl_context

TIMEOUT_S = 5.0


def _listed_models(target: Target, timeout: float) -> set[str] | None:
    """The model ids the endpoint lists (None when it lists none); raises when it can't be
    reached or refuses the key."""
    url = target.base_url.rstrip("/") + "/models"
    key = target.api_key()
    headers = {"Authorization": f"Bearer {key}", **target.headers()}
    try:
        response = httpx2.get(
            url, headers=headers, timeout=timeout, follow_redirects=True, verify=ssl_context()
        )
    except httpx2.TimeoutException:
        raise EndpointUnreachableError(
            f"endpoint {target.base_url} did not answer within {timeout:.0f} s (GET /models): "
            f"nothing was sent. Is the server up and the URL right?"
        ) from None
    except httpx2.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise EndpointUnreachableError(
            f"endpoint {target.base_url} cannot be reached ({target.redact(reason)}): nothing "
            f"was sent. Is the server up and the URL right?"
        ) from None
    if response.status_code in (401, 403):
        env = target.spec.key_env
        raise FatalRequestError(
            f"model {target.spec.name!r}: endpoint {target.base_url} refused its key "
            f"({response.status_code}): nothing was sent. Fix the key"
            + (f" in ${env}" if env else " (the model has no api_key_env)")
        )
    if response.status_code != 200:
        return None  # some servers list no models: the first request will tell
    try:
        data = response.json().get("data")
        listed = {str(entry["id"]) for entry in data}
    except (ValueError, AttributeError, TypeError, KeyError):
        return None
    return listed or None


def check_endpoints(targets: list[Target], timeout: float = TIMEOUT_S) -> None:
    """Raise the first problem found with any endpoint of the run (see the module's doc)."""
    by_endpoint: dict[tuple[str, str | None], list[Target]] = defaultdict(list)
    for target in targets:
        by_endpoint[(target.base_url, target.spec.key_env)].append(target)
    for group in by_endpoint.values():
        listed = _listed_models(group[0], timeout)
        if listed is None:
            continue
        for target in group:
            if target.spec.model not in listed:
                raise FatalRequestError(
                    f"model {target.spec.name!r}: endpoint {target.base_url} has no model "
                    f"{target.spec.model!r} (it lists: {', '.join(sorted(listed)[:20])}): "
                    f"nothing was sent"
                )


def check_prefect_api(api_url: str, timeout: float = TIMEOUT_S) -> None:
    """Raise when nothing answers at the Prefect API the run would use (PREFECT_API_URL, or
    the stack's): any HTTP answer will do, only a server that can't be reached is refused."""
    try:
        httpx2.get(api_url.rstrip("/") + "/health", timeout=timeout, verify=ssl_context())
    except httpx2.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise ConfigError(
            f"PREFECT_API_URL {api_url}: no Prefect server answers there ({reason}): nothing "
            f"was sent. Start it (`evalflow up` for the local one), or unset PREFECT_API_URL "
            f"to run on a temporary server"
        ) from None
