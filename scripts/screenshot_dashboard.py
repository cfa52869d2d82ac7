#!/usr/bin/env python3
"""Write docs/dashboard.png: the Overview page of `snapfim serve` over a small fleet scanned
for real (tests/web/fleet.py: ext4 images built with mkfs.ext4/debugfs, scanned twice by
`snapfim scan`'s path and once by the fleet cycle, one disk without a filesystem), captured
in Debian's headless Chromium (``apt-get install chromium``; Playwright drives it, nothing is
downloaded).

    python3 scripts/screenshot_dashboard.py [--out docs/dashboard.png] [--page /]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    """Build the fleet, serve it, save the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--page", default="/", help="the page to capture (default: /)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from scanner.storage.db import make_engine, upgrade
    from scanner.storage.repository import Repository
    from tests.web.fleet import base_image, build_fleet
    from tests.web.server import serving

    with tempfile.TemporaryDirectory(prefix="snapfim-shot-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'snapfim.db'}"
        engine = make_engine(url)
        upgrade(engine)
        build_fleet(Repository(engine), base_image(work / "base"), work / "images")
        engine.dispose()
        with serving(url, work) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium,
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.goto(base + args.page)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
