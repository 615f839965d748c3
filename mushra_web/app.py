"""The web service: the participant's API and audio, the admin API and the two static pages, each a router
(participant_api, admin_api, pages) sharing what web.py holds; here they are put together behind one guard.

No state is held in memory between requests: participants, plans, ratings, admin sessions and the URL-signing key
all live in the database, so ``serve --workers N`` against PostgreSQL behaves like one process.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Optional

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from mushra_web import admin_api, auth, pages, participant_api
from mushra_web.db import REQUEST_THREADS, init_db, make_engine, session_factory
from mushra_web.web import STATIC, Settings, Wiring

MAX_BODY = 64 * 1024
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
]


class _Guard:
    """Size limit on request bodies, JSON-only writes, and headers that keep pages from being framed or sniffed.

    A plain ASGI middleware: it counts the body as it streams in instead of buffering it a second time.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if scope["method"] in ("POST", "PUT", "DELETE", "PATCH"):
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                await _reject(send, 413, f"request body over {MAX_BODY} bytes")
                return
            has_body = (length is not None and length != b"0") or b"transfer-encoding" in headers
            if has_body and not headers.get(b"content-type", b"").startswith(b"application/json"):
                await _reject(send, 415, "request bodies must be application/json")
                return
        received, started, rejected = 0, False, False

        async def counted_receive():
            nonlocal received, rejected
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY and not rejected:
                rejected = True  # answer now; the app sees a client that went away and its answer is dropped
                if not started:
                    await _reject(send, 413, f"request body over {MAX_BODY} bytes")
                return {"type": "http.disconnect"}
            return message

        async def send_with_headers(message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in SECURITY_HEADERS if k not in present)]
            await send(message)

        await self.app(scope, counted_receive, send_with_headers)


async def _reject(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field and the problem, without echoing the input: a value such as 1e400 or NaN cannot be
    written as JSON, and echoing it would turn a clear refusal into a 500."""
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


@contextlib.asynccontextmanager
async def _lifespan(_app: FastAPI):
    anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
    yield


def create_app(settings: Optional[Settings] = None) -> FastAPI:
    """The ASGI app; tables are created if missing, so a fresh database needs no separate step."""
    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url)
    init_db(engine)
    sessions = session_factory(engine)
    with sessions() as session:  # made once and kept in the database: every worker reads the same key
        url_key = auth.server_secret(session)
    app = FastAPI(title="mushra-web", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan)
    app.state.wiring = Wiring(settings=settings, sessions=sessions, url_key=url_key,
                              data_dir=Path(settings.data_dir).resolve())
    app.add_middleware(_Guard)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages.router)
    app.include_router(participant_api.router)
    app.include_router(admin_api.router)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and for each worker of ``mushra-web serve --workers N``."""
    return create_app(Settings.from_env())
