"""The HTML report in a real browser: Debian's headless Chromium, driven by
Selenium with the distribution's chromedriver (nothing is downloaded).

Reports are made from real ``pyleakhunt run`` timelines: a leaking program,
a clean one, and a leaking program whose file name and leaking line are
markup.  With ``PYLEAKHUNT_SCREENSHOT=PATH`` the leaking program's report is
also saved as a PNG (the one in docs/img/).
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any, List

import pytest
from helpers import browser_env, recorded_timeline, report_of
from test_html_report import (
    CLEAN_SCRIPT,
    HOSTILE,
    HOSTILE_SCRIPT,
    LEAK_LINE,
    LEAKY_SCRIPT,
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed "
        "(apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1800",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        service=Service(CHROMEDRIVER, env=browser_env()), options=options
    )
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Reports of real timelines: leaky, clean and hostile."""
    made = {}
    for name, script, source in (
        ("leaky", "leaky.py", LEAKY_SCRIPT),
        ("clean", "clean.py", CLEAN_SCRIPT),
        ("hostile", HOSTILE + ".py", HOSTILE_SCRIPT),
    ):
        directory = str(tmp_path_factory.mktemp(name))
        made[name] = report_of(recorded_timeline(directory, script, source))
    return made


def open_report(driver: Any, path: str) -> List[Any]:
    """Open *path*, wait until it has drawn; the console entries so far."""
    driver.get_log("browser")  # forget the previous page's entries
    driver.get("file://" + os.path.abspath(path))
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script(
            "return document.documentElement.getAttribute('data-plh-drawn-ms')"
        )
    )
    return driver.get_log("browser")


def errors(entries: List[Any]) -> List[Any]:
    return [e for e in entries if e.get("level") in ("SEVERE", "ERROR")]


def width(element: Any) -> float:
    return element.rect["width"]


def png_pixels(png: bytes) -> bytes:
    """The decompressed, unfiltered-by-row image data of an RGB(A) PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    w = h = channels = 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            w, h, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = w * channels
    rows, prev = [], bytearray(stride)
    for y in range(h):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[x] = (line[x] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return b"".join(rows)


# --------------------------------------------------------------------------


def test_leaking_program_report_draws_its_series_and_names_the_line(browser, reports):
    console = open_report(browser, reports["leaky"])
    assert errors(console) == []
    names = [
        p.get_attribute("data-name")
        for p in browser.find_elements(By.CSS_SELECTOR, "path.plh-series")
    ]
    assert names[0] == "traced memory"
    assert any(n.endswith("leaky.py:%d" % LEAK_LINE) for n in names), names
    first = browser.find_element(By.CSS_SELECTOR, "table.plh-suspects tr.plh-row")
    assert "leaky.py:%d" % LEAK_LINE in first.text
    assert "KEPT.append" in first.text
    # The row expands to its whole traceback.
    detail = browser.find_element(By.CSS_SELECTOR, "table.plh-suspects tr.plh-detail")
    assert not detail.is_displayed()
    first.click()
    assert detail.is_displayed() and "in leaky.main" in detail.text
    # Nothing was fetched: the page is self-contained.
    assert (
        browser.execute_script("return performance.getEntriesByType('resource').length")
        == 0
    )


def test_chart_hover_shows_the_time_and_the_values(browser, reports):
    open_report(browser, reports["leaky"])
    overlay = browser.find_element(By.CSS_SELECTOR, ".plh-chart-box svg rect")
    ActionChains(browser).move_to_element(overlay).perform()
    tip = browser.find_element(By.CSS_SELECTOR, ".plh-chart-box .plh-tip")
    assert tip.is_displayed()
    assert tip.text.startswith("at ")
    assert "traced memory" in tip.text and "iB" in tip.text


def test_clicking_a_flame_frame_zooms_it_to_the_full_width(browser, reports):
    open_report(browser, reports["leaky"])
    flame = browser.find_elements(By.CSS_SELECTOR, ".plh-icicle")[0]
    full = width(flame)
    frames = flame.find_elements(By.CSS_SELECTOR, ".plh-fr.plh-cat-user")
    target = next(f for f in frames if f.text.startswith("leaky.handle"))
    frame_id = target.get_attribute("data-id")
    before = width(target)
    target.click()
    zoomed = flame.find_element(By.CSS_SELECTOR, '.plh-fr[data-id="%s"]' % frame_id)
    full = width(flame)  # a scroll bar may have come or gone
    assert abs(width(zoomed) - full) <= 1.5, (width(zoomed), full, before)
    # Clicking the root comes back.
    flame.find_element(By.CSS_SELECTOR, '.plh-fr[data-id="0"]').click()
    back = flame.find_element(By.CSS_SELECTOR, '.plh-fr[data-id="%s"]' % frame_id)
    assert abs(width(back) - before) <= 1.5


def test_search_highlights_the_matching_frames_with_their_share(browser, reports):
    open_report(browser, reports["leaky"])
    section = browser.find_elements(By.CSS_SELECTOR, "section.plh-flame")[0]
    search = section.find_element(By.CSS_SELECTOR, "input.plh-search")
    search.send_keys("leaky.handle")
    matched = section.find_elements(By.CSS_SELECTOR, ".plh-fr.plh-match")
    assert matched
    assert all(m.get_attribute("data-name") == "leaky.handle" for m in matched)
    unmatched = section.find_elements(By.CSS_SELECTOR, ".plh-fr:not(.plh-match)")
    assert unmatched
    assert not any(u.get_attribute("data-name") == "leaky.handle" for u in unmatched)
    result = section.find_element(By.CSS_SELECTOR, ".plh-search-result").text
    assert "matching frames" in result and "% of the total" in result


def test_clean_program_report_says_no_suspect(browser, reports):
    console = open_report(browser, reports["clean"])
    assert errors(console) == []
    empty = browser.find_element(By.CSS_SELECTOR, "section.plh-suspects .plh-empty")
    assert empty.text.startswith("No suspect")
    assert browser.find_elements(By.CSS_SELECTOR, "table.plh-suspects") == []


def test_hostile_names_render_as_text(browser, reports):
    console = open_report(browser, reports["hostile"])
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert errors(console) == []
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    first = browser.find_element(By.CSS_SELECTOR, "table.plh-suspects tr.plh-row")
    assert HOSTILE + ".py:%d" % LEAK_LINE in first.text
    assert "# " + HOSTILE in first.text  # the source line, as text


def test_screenshot_is_not_blank(browser, reports):
    open_report(browser, reports["leaky"])
    png = browser.get_screenshot_as_png()
    pixels = png_pixels(png)
    # A blank page is one colour; a drawn report has its chart, table and
    # flame graph in many.
    assert len(set(pixels[i : i + 3] for i in range(0, len(pixels), 4 * 97))) > 20
    target = os.environ.get("PYLEAKHUNT_SCREENSHOT")
    if target:
        with open(target, "wb") as f:
            f.write(png)
