"""The ASGI application of ``snapfim serve``: the API, the pages, the static files, error
handlers translating our error tree (400 for bad parameters, 404 for unknown ids, 503 when
the database is unavailable) and the security middleware around all of it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from scanner.errors import ConfigError, NotFound, SnapfimError, TransientStorageError
from scanner.storage.repository import Repository
from scanner.web import api, pages
from scanner.web.context import WebContext
from scanner.web.security import SecurityMiddleware

STATIC = Path(__file__).parent / "static"
OPENAPI_URL = "/api/v1/openapi.json"


def _status(exc: Exception) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, ConfigError | RequestValidationError):
        return 400
    if isinstance(exc, TransientStorageError):
        return 503
    return 500


def _message(exc: Exception) -> str:
    if isinstance(exc, RequestValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
                         for e in exc.errors())
    return " ".join(str(exc).split())


async def _error(request: Request, exc: Exception) -> Response:
    status, message = _status(exc), _message(exc)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=status)
    return pages.render("error.html", status_code=status, status=status, active="",
                        message=message)


def create_app(repo: Repository, *, token: str | None,
               stale_after: timedelta = timedelta(hours=48), context: Any = None) -> Any:
    """The application over ``repo``; with ``token`` every request needs it as a bearer
    token. ``context`` replaces the :class:`WebContext` (tests pin the clock)."""
    app = FastAPI(title="snapfim", version="1",
                  description="Read-only API of snapfim: machines, scans with coverage, "
                              "change events as ConfigurationChange records, summary, policy.",
                  openapi_url=OPENAPI_URL, docs_url=None, redoc_url=None)
    app.state.snapfim = context or WebContext(repo, stale_after)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(SnapfimError, _error)
    app.add_exception_handler(RequestValidationError, _error)
    return SecurityMiddleware(app, token)
