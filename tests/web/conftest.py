"""The dashboard tests read one real scanned fleet (tests/web/fleet.py) per database: built
once per module on a fresh SQLite file and on a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository
from tests.conftest import fresh_pg_database
from tests.web.fleet import Fleet, base_image, build_fleet


@dataclass(frozen=True)
class Scanned:
    """A repository holding the scanned fleet, its URL and its ids."""

    repo: Repository
    url: str
    ids: Fleet


@pytest.fixture(scope="session")
def web_base_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base image the fleet's disks are copied from."""
    return base_image(tmp_path_factory.mktemp("web-base"))


@pytest.fixture(scope="module")
def pg_module_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test module, dropped afterwards."""
    with fresh_pg_database("snapfim_web") as url:
        yield url


def _scanned(url: str, base: Path, workdir: Path) -> Iterator[Scanned]:
    engine = make_engine(url)
    upgrade(engine)
    repo = Repository(engine)
    ids = build_fleet(repo, base, workdir)
    yield Scanned(repo, url, ids)
    engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scanned(request: pytest.FixtureRequest, web_base_image: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scanned]:
    """The scanned fleet, on each database."""
    workdir = tmp_path_factory.mktemp(f"web-fleet-{request.param}")
    url = (f"sqlite:///{workdir / 'snapfim.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_module_url")))
    yield from _scanned(url, web_base_image, workdir / "images")


@pytest.fixture(scope="module")
def scanned_sqlite(web_base_image: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Scanned]:
    """The scanned fleet on SQLite only (the browser tests serve it)."""
    workdir = tmp_path_factory.mktemp("web-fleet-browser")
    yield from _scanned(f"sqlite:///{workdir / 'snapfim.db'}", web_base_image,
                        workdir / "images")
