"""Authentication and headers: a token is required on every route when configured, the
process refuses a non-loopback address without one (one line, exit 2), every response
carries the security headers; `snapfim serve` run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest

from scanner.errors import ConfigError
from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository
from scanner.web.app import create_app
from scanner.web.security import CSP, token_matches
from scanner.web.settings import WebSettings, is_loopback, read_token
from tests.web.conftest import Scanned
from tests.web.server import serving

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN = "s3cret-token-0123456789"
ROUTES = ("/", "/changes", "/machines", "/machines/1", "/policy", "/static/style.css",
          "/api/v1/machines", "/api/v1/machines/1", "/api/v1/scans", "/api/v1/scans/1",
          "/api/v1/changes", "/api/v1/summary", "/api/v1/policy", "/api/v1/openapi.json",
          "/no/such/page")
SECURITY_HEADERS = {
    "content-security-policy": CSP, "x-content-type-options": "nosniff",
    "x-frame-options": "DENY", "referrer-policy": "no-referrer", "cache-control": "no-store"}


@pytest.fixture
def empty_repo(tmp_path: Path) -> Repository:
    engine = make_engine(f"sqlite:///{tmp_path / 'web.db'}")
    upgrade(engine)
    return Repository(engine)


def headers_of(response: object) -> dict[str, str]:
    return {k: response.headers[k] for k in SECURITY_HEADERS}  # type: ignore[attr-defined]


def test_every_route_needs_the_token_when_one_is_set(empty_repo: Repository) -> None:
    with TestClient(create_app(empty_repo, token=TOKEN)) as client:
        for route in ROUTES:
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                            {"Authorization": f"Basic {TOKEN}"},
                            {"Authorization": f"Bearer {TOKEN}x"}):
                response = client.get(route, headers=headers)
                assert response.status_code == 401, (route, headers)
                assert response.json() == {"detail": "a bearer token is required"}
                assert response.headers["www-authenticate"] == 'Bearer realm="snapfim"'
                assert headers_of(response) == SECURITY_HEADERS
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/api/v1/machines", headers=good).json() == {
            "items": [], "next_cursor": None}
        assert client.get("/", headers=good).status_code == 200
        assert client.get("/machines/1", headers=good).status_code == 404


def test_security_headers_on_every_response(empty_repo: Repository) -> None:
    with TestClient(create_app(empty_repo, token=None), base_url="http://localhost:8080") as client:
        for route in ROUTES:
            response = client.get(route)
            assert headers_of(response) == SECURITY_HEADERS, route
        assert client.get("/api/v1/changes?limit=0").status_code == 400
        assert headers_of(client.get("/api/v1/changes?limit=0")) == SECURITY_HEADERS


def test_token_comparison() -> None:
    assert token_matches(f"Bearer {TOKEN}".encode(), TOKEN)
    assert token_matches(f"bearer {TOKEN}".encode(), TOKEN)
    assert not token_matches(None, TOKEN)
    assert not token_matches(TOKEN.encode(), TOKEN)
    assert not token_matches(f"Bearer {TOKEN[:-1]}".encode(), TOKEN)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("::1", True), ("[::1]", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("localhost", False)])
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_settings_refuse_a_public_address_without_a_token(tmp_path: Path) -> None:
    assert WebSettings.build("127.0.0.1", 8080, {}) == WebSettings("127.0.0.1", 8080, None)
    with pytest.raises(ConfigError, match=r"^serving on 0.0.0.0 needs a bearer token: set "
                                          r"SNAPFIM_WEB_TOKEN or SNAPFIM_WEB_TOKEN_FILE"):
        WebSettings.build("0.0.0.0", 8080, {})
    assert WebSettings.build("0.0.0.0", 80, {"SNAPFIM_WEB_TOKEN": TOKEN}).token == TOKEN
    secret = tmp_path / "token"
    secret.write_text(f"  {TOKEN}\n")
    assert read_token({"SNAPFIM_WEB_TOKEN_FILE": str(secret)}) == TOKEN


@pytest.mark.parametrize(("env", "message"), [
    ({"SNAPFIM_WEB_TOKEN": "short"},
     "SNAPFIM_WEB_TOKEN must be at least 16 printable characters without spaces"),
    ({"SNAPFIM_WEB_TOKEN": "0123456789 abcdefgh"},
     "SNAPFIM_WEB_TOKEN must be at least 16 printable characters without spaces"),
    ({"SNAPFIM_WEB_TOKEN": TOKEN, "SNAPFIM_WEB_TOKEN_FILE": "/x"},
     "set SNAPFIM_WEB_TOKEN or SNAPFIM_WEB_TOKEN_FILE, not both"),
    ({"SNAPFIM_WEB_TOKEN_FILE": "/nonexistent/token"},
     "SNAPFIM_WEB_TOKEN_FILE: cannot read '/nonexistent/token' (No such file or directory)"),
])
def test_bad_token_settings_are_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_token(env)
    assert str(caught.value) == message


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SNAPFIM_DATA_DIR": str(tmp_path / "data"), **env}
    for name in ("SNAPFIM_WEB_TOKEN", "SNAPFIM_WEB_TOKEN_FILE", "SNAPFIM_DATABASE_URL"):
        if name not in env:
            full.pop(name, None)
    return subprocess.run([sys.executable, "-m", "scanner", "serve", *args], env=full,
                          text=True, capture_output=True, timeout=60)


@pytest.mark.parametrize(("args", "env", "message"), [
    (("--host", "0.0.0.0"), {},
     "snapfim: error: serving on 0.0.0.0 needs a bearer token: set SNAPFIM_WEB_TOKEN or "
     "SNAPFIM_WEB_TOKEN_FILE (or bind 127.0.0.1)"),
    (("--host", "::"), {"SNAPFIM_WEB_TOKEN_FILE": "/nonexistent/token"},
     "snapfim: error: SNAPFIM_WEB_TOKEN_FILE: cannot read '/nonexistent/token' "
     "(No such file or directory)"),
])
def test_serve_refuses_to_start_without_a_usable_token(
        tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    proc = _serve(tmp_path, *args, **env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [message]
    assert proc.stdout == ""


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_serve_answers_on_loopback_without_a_token(scanned_sqlite: Scanned,
                                                   tmp_path: Path) -> None:
    with serving(scanned_sqlite.url, tmp_path) as base:
        status, headers, body = _get(base + "/api/v1/machines?limit=2")
        assert status == 200
        assert [m["name"] for m in json.loads(body)["items"]] == ["broken-01", "app-01"]
        assert headers["content-security-policy"] == CSP
        assert "server" not in headers
        status, _, body = _get(base + "/")
        assert status == 200 and b"Changes per day by category" in body


def test_serve_with_a_token_requires_it_on_any_address(scanned_sqlite: Scanned,
                                                       tmp_path: Path) -> None:
    with serving(scanned_sqlite.url, tmp_path, token=TOKEN, host="::1") as base:
        assert _get(base + "/api/v1/summary")[0] == 401
        assert _get(base + "/")[0] == 401
        status, _, body = _get(base + "/api/v1/summary", TOKEN)
        assert status == 200 and json.loads(body)["total_changes"] == 6


def test_without_a_token_only_loopback_hosts_are_served(empty_repo: Repository) -> None:
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 reaches
    the port, but sends its own Host; without a token that is refused."""
    with TestClient(create_app(empty_repo, token=None)) as client:
        for host in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example",
                     "localhost:80x", "[::1]x", "", "127.0.0.2"):
            response = client.get("/api/v1/machines", headers={"Host": host})
            assert response.status_code == 400, host
            assert response.json() == {"detail": "without a token only a loopback Host is "
                                                  "served (localhost, 127.0.0.1, [::1])"}
            assert headers_of(response) == SECURITY_HEADERS
        for host in ("localhost", "LOCALHOST:8080", "127.0.0.1:8080", "[::1]:8080", "[::1]"):
            response = client.get("/api/v1/machines", headers={"Host": host})
            assert response.status_code == 200, host
    with TestClient(create_app(empty_repo, token=TOKEN)) as client:  # a token: any Host
        response = client.get("/api/v1/machines", headers={
            "Host": "fim.example.com", "Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
