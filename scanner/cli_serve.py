"""`snapfim serve`: the dashboard and the read-only API over the configured database."""

from __future__ import annotations

from typing import Annotated

import typer

from scanner.cli_output import say
from scanner.cli_support import open_repository


def serve(
    host: Annotated[str, typer.Option(
        help="Address to listen on. Anything but 127.0.0.1 or ::1 needs SNAPFIM_WEB_TOKEN "
             "(or SNAPFIM_WEB_TOKEN_FILE): every request then carries it as a bearer token."
    )] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """Serve the dashboard (Overview, Changes, Machines, Policy) and the JSON API /api/v1/."""
    import uvicorn

    from scanner.settings import Settings
    from scanner.web.app import create_app
    from scanner.web.settings import WebSettings

    web = WebSettings.build(host, port)          # refuses a public address without a token
    settings = Settings.from_env()
    repo = open_repository(settings)
    app = create_app(repo, token=web.token, stale_after=settings.fleet().stale_machine_after)
    auth = "bearer token required" if web.token else "no authentication (loopback only)"
    shown = f"[{host}]" if ":" in host else host
    say(f"snapfim dashboard on http://{shown}:{port}/ ({auth}); API at /api/v1/")
    uvicorn.run(app, host=host, port=port, server_header=False, proxy_headers=False,
                log_level="warning")
