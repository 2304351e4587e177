"""The HTML report in a real browser: Debian's headless Chromium, driven by Playwright for Python.

No browser is downloaded: Playwright launches ``/usr/bin/chromium`` (``apt-get install chromium``;
``.ci/run`` installs it and ``pip install playwright``). The page must load from disk with no
console error and no network request, every image must be decoded (``naturalWidth > 0``), and a
full-page screenshot is written (to ``$NEUROEVO_SCREENSHOTS`` when set, else the test's folder).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from neuroevo.cli import main

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("NEUROEVO_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


def _report(tmp_path: Path) -> Path:
    """A report of a NEAT run overlaid with a folder of two seeds of an MLP run: most panels at once."""
    neat, seeds = tmp_path / "neat", tmp_path / "seeds"
    quick = ["--quiet", "--generations", "3"]
    assert main(["run", str(ROOT / "examples/xor_neat.toml"), "--out", str(neat), *quick]) == 0
    assert (
        main(["run", str(ROOT / "examples/xor_ga.toml"), "--out", str(seeds), "--seeds", "0-1", *quick]) == 0
    )
    out = tmp_path / "report.html"
    assert main(["report", str(neat), str(seeds), "--out", str(out)]) == 0
    return out


def test_report_in_headless_chromium(tmp_path):
    page_path = _report(tmp_path)
    shots = Path(os.environ.get("NEUROEVO_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "request", lambda r: None if r.url.startswith(("file:", "data:")) else requests.append(r.url)
            )
            page.goto(page_path.as_uri(), wait_until="load")
            widths = page.evaluate("[...document.images].map(i => [i.alt, i.complete, i.naturalWidth])")
            headings = page.evaluate("[...document.querySelectorAll('h2')].map(h => h.textContent)")
            screenshot = shots / "report.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert errors == [] and requests == []
    assert len(widths) >= 8, widths
    assert all(complete and width > 0 for _, complete, width in widths), widths
    for heading in ("Final figures", "Fitness", "NEAT species", "Best network", "Config"):
        assert heading in headings
    with Image.open(screenshot) as image:
        assert (
            image.width == 1280 and image.height > 3000
        )  # the whole page (tables scroll, the page does not)
