"""Webhooks of the letters and agency kinds: `/letters/{provider}/{event}`, `/agency/{provider}/{event}`.

Kept apart from `deployments.webhooks` (which mounts this router) so the two change independently.
The server only routes: each provider authenticates and parses its own callbacks (Lob's
`Lob-Signature`, the agency's `X-Agency-Signature`), and `tasks.letters` / `tasks.agency` record
what they say. A tracking event for a letter we do not know answers 404, so the vendor shows it
and pushes it again (its send may not be recorded yet); one about a letter another system mailed
through the same account (its key is not of this installation) is acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from arrears.settings import get_settings
from arrears.storage import one_writer
from integrations.errors import ConfigError, InvalidCallback, UnverifiedCallback
from integrations.providers import build_provider
from tasks.agency import record_statuses
from tasks.letters import mailed_by_others, record_tracking
from tasks.recovery import settle_recoveries

__all__ = ["MAX_BODY", "mail_providers_from_settings", "mail_router"]

log = logging.getLogger(__name__)
MAX_BODY = 256 * 1024
_KINDS = ("letters", "agency")


def _in_turn(engine: Engine, fn: Callable[..., Any], /, *args: Any) -> Any:
    """`fn(*args, engine_=engine)` in this process's turn to write (`one_writer`)."""
    with one_writer(engine):
        return fn(*args, engine_=engine)


def mail_router(engine: Engine, providers: Mapping[str, Mapping[str, Any]]) -> APIRouter:
    """Routes for `providers` (kind → provider name → provider) over `engine`."""
    router = APIRouter()
    record: dict[str, Callable[..., tuple[int, int]]] = {
        "letters": record_tracking,
        "agency": record_statuses,
    }

    async def handle(kind: str, provider: str, request: Request) -> JSONResponse:
        chosen = providers.get(kind, {}).get(provider)
        if chosen is None:
            return JSONResponse({"error": f"no {kind} provider {provider!r}"}, 404)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "callback body too large"}, 413)
        try:
            parsed = chosen.parse_callback(dict(request.headers), body, url=str(request.url))
        except UnverifiedCallback as e:  # a signature missing or wrong: nothing read
            return JSONResponse({"error": str(e)}, 403)
        except InvalidCallback as e:  # signed, but not the vendor's shape: the vendor's bug to fix
            return JSONResponse({"error": str(e)}, 400)
        try:
            known, moved = await run_in_threadpool(lambda: _in_turn(engine, record[kind], parsed))
        except Exception as e:  # every vendor retries a 5xx; the log line names no borrower
            log.error("storing a %s callback failed: %s", kind, type(e).__name__)
            return JSONResponse({"error": "internal error; retry later"}, 500)
        if parsed and not known:
            if kind == "letters" and await run_in_threadpool(
                lambda: mailed_by_others(parsed, engine_=engine)
            ):
                # Another system's mail through the same account: acknowledged, or the vendor
                # would push it again for days (Lob retries anything but a 2xx).
                log.info("%s/%s: %d events about letters another system mailed", kind, provider, len(parsed))
                return JSONResponse({"ok": True, "moved": 0, "not_ours": len(parsed)})
            return JSONResponse({"error": f"no {kind} row has this id"}, 404)
        if moved:  # a recovery, or its notice of sale mailed: the account moves on now
            await run_in_threadpool(lambda: _in_turn(engine, settle_recoveries))
        return JSONResponse({"ok": True, "moved": moved})

    @router.post("/letters/{provider}/{event}")
    async def letters(provider: str, event: str, request: Request) -> JSONResponse:
        return await handle("letters", provider, request)

    @router.post("/agency/{provider}/{event}")
    async def agency(provider: str, event: str, request: Request) -> JSONResponse:
        return await handle("agency", provider, request)

    return router


def mail_providers_from_settings(stack: ExitStack) -> dict[str, dict[str, Any]]:
    """The configured letters and agency providers, opened on `stack`; none for an embedded
    sandbox (no URL: nothing calls back). Raises `ConfigError` naming the setting when one could
    not authenticate its callbacks (`check_callbacks`: an empty webhook secret)."""
    settings = get_settings()
    found: dict[str, dict[str, Any]] = {}
    for kind in _KINDS:
        base_url = getattr(settings, f"{kind}_base_url")
        if base_url is None:
            continue
        name = getattr(settings, f"{kind}_provider")
        credentials = {k: v.get_secret_value() for k, v in getattr(settings, f"{kind}_credentials").items()}
        provider = stack.enter_context(build_provider(kind, name, base_url, credentials))
        check = getattr(provider, "check_callbacks", None)
        try:
            if check is not None:
                check()
        except ConfigError as e:  # an empty webhook secret: anyone could sign its callbacks
            raise ConfigError(f"ARREARS_{kind.upper()}_CREDENTIALS: {e.reason}", code=e.code) from None
        found[kind] = {name: provider}
    return found
