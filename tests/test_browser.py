"""The report as a reader sees it: every page opened in headless Chromium at 1400 px.

Debian's `chromium` and `chromium-driver` (`make chromium` installs them as root), driven by selenium
from the dev extra; nothing is downloaded at test time (SE_OFFLINE: no Selenium Manager). On every
page: no console errors, every image loaded (natural width > 0), every internal link resolves (its
file exists, its #fragment is an id there), nothing wider than the window. The runs table sorts and
filters. Saves front.png and paper.png (a paper page): in reports/screenshots/ (the README's) when the
report is a real one (THINWIRE_REPORT), in reports/screenshots/fixture/ (ignored by git) otherwise.

The report is built from tests/report_fixture.py, unless THINWIRE_REPORT names a built report folder
(e.g. THINWIRE_REPORT=reports after `make reproduce`). Skips, saying why, only without Chromium.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "reports" / "screenshots"
if not os.environ.get("THINWIRE_REPORT"):
    SCREENSHOTS = SCREENSHOTS / "fixture"  # a fixture's pictures never replace the README's
WIDTH, HEIGHT = 1400, 1000


def _binary(*names: str) -> str | None:
    return next((found for name in names if (found := shutil.which(name) or (
        f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None))), None)


CHROMIUM = _binary("chromium", "chromium-browser")
CHROMEDRIVER = _binary("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Chromium is not installed (Debian's chromium and chromium-driver; `make chromium` installs "
           f"them as root): chromium {CHROMIUM or 'absent'}, chromedriver {CHROMEDRIVER or 'absent'}")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("THINWIRE_REPORT")
    if given:
        folder = Path(given).resolve()
        assert (folder / "index.html").is_file(), f"THINWIRE_REPORT={given} holds no index.html"
        return folder
    from report_fixture import build

    return build(tmp_path_factory.mktemp("browser")).resolve()


@pytest.fixture(scope="module")
def browser():
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager fetch a browser or a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _pages(report: Path) -> list[Path]:
    return sorted(report.rglob("*.html"))


def _open(driver, page: Path) -> list[dict]:
    """Load `page` fully (images included); the console messages it logged."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(page.as_uri())
    driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const pending = Array.from(document.images).filter(i => !i.complete)
            .map(i => new Promise(r => { i.onload = r; i.onerror = r; }));
        Promise.all(pending).then(() => done());""")
    return driver.get_log("browser")


def _broken_links(driver, page: Path) -> list[str]:
    """The page's links to files that do not exist or to #fragments that are no id there."""
    broken = []
    for href in driver.execute_script("return Array.from(document.links, a => a.href)"):
        url = urlsplit(href)
        if url.scheme != "file":
            broken.append(f"{href} (leaves the report: it must work offline)")
            continue
        target = Path(unquote(url.path))
        if not target.is_file():
            broken.append(href)
        elif url.fragment and f'id="{url.fragment}"' not in target.read_text(errors="replace"):
            broken.append(f"{href} (no such id)")
    return broken


def test_every_page_loads_cleanly_at_1400_px(browser, report: Path) -> None:
    pages = _pages(report)
    assert {"index.html", "runs.html"} <= {p.name for p in pages} and any(p.parent.name == "papers" for p in pages)
    problems = []
    for page in pages:
        name = page.relative_to(report).as_posix()
        errors = [e["message"] for e in _open(browser, page) if e["level"] == "SEVERE"]
        problems += [f"{name}: console error: {m}" for m in errors]
        assert browser.execute_script("return window.innerWidth") == WIDTH
        unloaded = browser.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        problems += [f"{name}: image not loaded: {src}" for src in unloaded]
        problems += [f"{name}: broken link: {href}" for href in _broken_links(browser, page)]
        wide = browser.execute_script("return document.documentElement.scrollWidth")
        if wide > WIDTH:
            problems.append(f"{name}: {wide} px wide, wider than the {WIDTH} px window: it scrolls sideways")
    assert not problems, "\n".join(problems)


def test_the_runs_table_sorts_and_filters(browser, report: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, report / "runs.html")
    table = browser.find_element(By.ID, "runs")

    def rows() -> list:
        return [r for r in table.find_elements(By.CSS_SELECTOR, "tbody tr") if r.is_displayed()]

    total = len(rows())
    assert total > 1
    heads = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    column = heads.index("steps")
    for direction in (1, -1):
        table.find_elements(By.CSS_SELECTOR, "thead th")[column].click()
        steps = [int(r.find_elements(By.TAG_NAME, "td")[column].text) for r in rows()]
        assert steps == sorted(steps, reverse=direction < 0)
    box = browser.find_element(By.CSS_SELECTOR, 'input[data-filter="runs"]')
    statuses = [r.find_elements(By.TAG_NAME, "td")[heads.index("status")].text for r in rows()]
    box.send_keys("status:ok")
    assert len(rows()) == statuses.count("ok")
    box.clear()
    box.send_keys("no-such-run-anywhere")
    assert rows() == [] and browser.find_element(By.CSS_SELECTOR, '[data-count="runs"]').text == f"0 of {total} runs shown"


def _screenshot(driver, page: Path, out: Path, max_height: int) -> None:
    _open(driver, page)
    height = min(driver.execute_script("return document.documentElement.scrollHeight"), max_height)
    driver.set_window_size(WIDTH, height)
    try:
        # The window's inner size is what was asked, less the (headless: no) browser frame.
        out.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(out)), out
    finally:
        driver.set_window_size(WIDTH, HEIGHT)


def test_screenshots_of_the_front_page_and_a_paper_page(browser, report: Path) -> None:
    from selenium.webdriver.common.by import By

    _screenshot(browser, report / "index.html", SCREENSHOTS / "front.png", 2400)
    # The paper page with the most figures drawn, its first card's setup and evidence unfolded.
    papers = sorted((report / "papers").glob("*.html"),
                    key=lambda p: (-len(re.findall("<img ", p.read_text())), p.name))
    _open(browser, papers[0])
    browser.execute_script("document.querySelector('article.claim details').open = true")
    assert browser.find_element(By.CSS_SELECTOR, "article.claim details dl").is_displayed()
    height = min(browser.execute_script("return document.documentElement.scrollHeight"), 1800)
    browser.set_window_size(WIDTH, height)
    try:
        assert browser.save_screenshot(str(SCREENSHOTS / "paper.png"))
    finally:
        browser.set_window_size(WIDTH, HEIGHT)
    for name in ("front.png", "paper.png"):
        shot = SCREENSHOTS / name
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(shot.read_bytes()[16:20], "big") == WIDTH, name
