"""The pages in a real headless Chromium (Debian's, driven by Playwright; nothing is
downloaded) over `snapfim serve` and a real scanned fleet: the overview with its charts,
a filter narrowing the changes table, a machine's coverage report, hostile file names shown
as text with no dialog, and no Content-Security-Policy violation anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from scanner.policy import RECOMMENDED_LINUX
from tests.web.conftest import Scanned
from tests.web.fleet import IMG_NAME, SCRIPT_PATH
from tests.web.server import serving

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def base_url(scanned_sqlite: Scanned, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[str]:
    with serving(scanned_sqlite.url, tmp_path_factory.mktemp("serve")) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Watched:
    """A page with every dialog and console error it raised."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    seen = Watched(page)
    yield seen
    assert seen.dialogs == []
    assert seen.errors == []          # a CSP violation is reported as a console error
    context.close()


def rows(page: Page, selector: str) -> list[list[str]]:
    return [[c.strip() for c in r.locator("td").all_inner_texts()]
            for r in page.locator(f"{selector} tbody tr").all()]


def test_overview_renders_its_charts_and_failed_machines_first(
        base_url: str, watched: Watched) -> None:
    page = watched.page
    assert page.goto(base_url + "/").status == 200   # type: ignore[union-attr]
    assert page.locator("#tile-machines .num").inner_text() == "4"
    assert page.locator("#tile-changes .num").inner_text() == "6"
    assert page.locator("#tile-failed .num").inner_text() == "1"
    charts = page.locator("figure.chart")
    assert charts.locator("figcaption").all_inner_texts() == [
        "Changes per day by category", "Changes per day by type"]
    today = datetime.now(UTC).date().isoformat()
    titles = charts.nth(0).locator("svg rect.bar title").all_text_contents()
    assert titles == [f"{today}: 2 added", f"{today}: 1 removed", f"{today}: 3 modified"]
    assert charts.nth(1).locator("svg rect.bar title").all_text_contents() == [
        f"{today}: 6 file"]
    box = charts.nth(0).locator("svg").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100  # drawn, styled
    heights = [float(h or 0) for h in charts.nth(0).locator("svg rect.bar")
               .evaluate_all("rs => rs.map(r => r.getAttribute('height'))")]
    assert heights[2] == pytest.approx(3 * heights[1], rel=0.02)  # to scale
    assert [r[0] for r in rows(page, "#machine-status")] == [
        "broken-01", "app-01", "db-01", "web-01"]
    assert [r[4] for r in rows(page, "#machine-status")] == ["failed", "ok", "ok", "ok"]
    assert rows(page, "#top-machines") == [["web-01", "cli", "5"], ["db-01", "cli", "1"]]


def test_a_filter_narrows_the_changes_table(base_url: str, watched: Watched) -> None:
    page = watched.page
    page.goto(base_url + "/changes")
    assert len(rows(page, "table.changes")) == 6
    page.fill("input[name=path]", "/etc/*.conf")
    page.click("#apply")
    page.wait_for_load_state()
    shown = rows(page, "table.changes")
    assert [(r[1].split("\n")[0], r[3], r[4]) for r in shown] == [
        ("web-01", "modified", "/etc/a.conf"), ("web-01", "added", f"/etc/{IMG_NAME}")]
    assert (shown[0][5], shown[0][6], shown[0][7]) == ("OwnerId", "uid 0", "uid 1000")
    page.select_option("select[name=category]", "modified")
    page.click("#apply")
    page.wait_for_load_state()
    assert [(r[3], r[4]) for r in rows(page, "table.changes")] == [("modified", "/etc/a.conf")]
    assert "category=modified" in page.url and "path=%2Fetc%2F*.conf" in page.url
    page.goto(base_url + "/changes?category=removed")
    [removed] = rows(page, "table.changes")
    assert (removed[4], removed[7]) == ("/etc/crontab", "not present")
    assert removed[6].splitlines()[:4] == ["type file", "size 13", "mode 0644", "uid 0"]


def test_the_pager_walks_every_change_once(base_url: str, watched: Watched) -> None:
    page = watched.page
    page.goto(base_url + "/changes?limit=4")
    seen = [r[4] for r in rows(page, "table.changes")]
    page.click("#next")
    page.wait_for_load_state()
    seen += [r[4] for r in rows(page, "table.changes")]
    assert page.locator("#next").count() == 0
    assert seen == ["/usr/sbin/sshd", "/usr/bin/tool", SCRIPT_PATH, "/etc/crontab",
                    "/etc/a.conf", f"/etc/{IMG_NAME}"]


def test_a_machine_page_shows_its_coverage_report(base_url: str, watched: Watched,
                                                  scanned_sqlite: Scanned) -> None:
    page = watched.page
    page.goto(base_url + "/")
    page.click("#machine-status >> text=web-01")
    page.wait_for_load_state()
    assert page.url == f"{base_url}/machines/{scanned_sqlite.ids.web}"
    latest = page.locator(f"#scan-{scanned_sqlite.ids.web_scans[1]}")
    assert latest.get_attribute("open") is not None
    assert "2 added, 1 removed, 2 modified" in latest.locator("summary").inner_text()
    [volume] = rows(latest, "table.volumes")   # type: ignore[arg-type]
    assert volume[:5] == ["disk", "ext4", "0", "33554432", "scanned"]
    assert volume[5] == "/"
    note = latest.locator("ul.notes li").inner_text()
    assert note.startswith(f"note: {SCRIPT_PATH}: a directory entry whose name holds '/'")
    assert page.locator("#policy-in-force li").count() == 18
    today = datetime.now(UTC).date().isoformat()
    assert page.locator("figure.chart svg rect.bar title").all_text_contents() == [
        f"{today}: 2 added", f"{today}: 1 removed", f"{today}: 2 modified"]
    broken = scanned_sqlite.ids.broken
    page.goto(f"{base_url}/machines/{broken}")
    assert page.locator("p.error").first.inner_text() == (
        "broken-01: no readable filesystem (disk: empty: all zeros, no filesystem)")


@pytest.mark.parametrize("where", ["/", "/changes", "machine", "/changes?path=/usr/bin"])
def test_hostile_names_show_as_text(base_url: str, watched: Watched, where: str,
                                    scanned_sqlite: Scanned) -> None:
    page = watched.page
    url = f"/machines/{scanned_sqlite.ids.web}" if where == "machine" else where
    page.goto(base_url + url)
    page.wait_for_load_state("load")
    assert page.evaluate("document.querySelectorAll('script, main img, iframe').length") == 0
    if where == "/":
        return                         # the overview names machines, not paths
    codes = page.locator("table.changes td.path code").all_inner_texts()
    assert SCRIPT_PATH in codes
    if where != "/changes?path=/usr/bin":
        assert f"/etc/{IMG_NAME}" in codes
    assert "&lt;script&gt;alert(1)" in page.content()


def test_the_policy_page_lists_each_scope_read_only(base_url: str, watched: Watched) -> None:
    page = watched.page
    page.goto(base_url + "/policy")
    assert page.locator("section.scope h2").all_inner_texts() == [
        "global policy (snapfim scan)", "account cli (local)", "account lab (local)"]
    lab = page.locator("section.scope").nth(2)
    linux = [r[0] for r in rows(lab, "table") if r[1] == "linux_file"]  # type: ignore[arg-type]
    assert linux == sorted(RECOMMENDED_LINUX)
    assert rows(page.locator("section.scope").nth(1), "table") == [  # type: ignore[arg-type]
        ["none of its own: snapfim scan machines use the global policy"]]
    assert page.locator("form, input, button").count() == 0     # nothing to submit


def test_the_window_selector_and_the_machines_list(base_url: str, watched: Watched) -> None:
    page = watched.page
    page.goto(base_url + "/")
    page.select_option("select[name=window]", "7d")
    page.click("form.window button")
    page.wait_for_load_state()
    assert page.url == base_url + "/?window=7d"
    assert page.locator("#tile-changes").inner_text() == "6\nchanges in the last 7 days"
    ticks = page.locator("figure.chart").nth(0).locator("svg text.tick").all_text_contents()
    assert len(ticks) == 3 + 7                       # y axis: 0, middle, top; a day each
    page.click("text=Machines")
    page.wait_for_load_state()
    assert [(r[0], r[4]) for r in rows(page, "#machines")] == [
        ("broken-01", "failed"), ("app-01", "ok"), ("db-01", "ok"), ("web-01", "ok")]
