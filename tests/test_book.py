"""The website and the deck of the committed record: laid out from the record, built without executing anything,
and opened in a real browser (Debian's Chromium, headless, driven by Playwright)."""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from kn_utils import book

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("KN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (make install installs Debian's chromium; CI has it)")


def test_the_book_lays_out_every_record_the_results_and_the_notes(tmp_path):
    pages = book.book_source(tmp_path / "src")
    records = {profile: sorted(p.stem for p in (REPO / folder).glob("[0-9][0-9]_*.ipynb")) for profile, _, folder in book.RECORDS}
    assert pages[:1] == ["index"] and {"results", "usage"} <= set(pages)
    for profile, notebooks in records.items():
        assert [page for page in pages if page.startswith(f"record/{profile}/")] == [f"record/{profile}/{n}" for n in notebooks]
    assert [page for page in pages if page.startswith("docs/")] == [f"docs/{p.stem}" for p in sorted((REPO / "docs").glob("*.md"))]
    config = yaml.safe_load((tmp_path / "src" / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off" and "sphinx_thebe" not in config["sphinx"]["config"]["extensions"]
    for doc in (tmp_path / "src" / "docs").iterdir():  # README's sections are pages of the book
        assert "](../README.md" not in doc.read_text()
    assert "Which weights" in (tmp_path / "src" / "index.md").read_text()


def test_a_readme_without_its_results_heading_is_named(tmp_path):
    (tmp_path / "README.md").write_text("# A study\n\nNo results here.\n")
    with pytest.raises(ValueError, match=r"README.md: no '## Results' heading"):
        book.book_source(tmp_path / "src", tmp_path)


def test_the_deck_reads_its_numbers_from_the_result_files(tmp_path):
    shutil.copytree(REPO / "results", tmp_path / "results")
    finetune = json.loads((tmp_path / "results" / "finetune.json").read_text())
    (tmp_path / "results" / "finetune.json").write_text(json.dumps(finetune | {"accuracy": 0.12345}))
    deck = book.deck_markdown(tmp_path)
    assert "test accuracy 0.1235" in deck and f"test accuracy {finetune['accuracy']:.4f}" not in deck
    assert deck.count("\n# ") == 5  # six slides: title, method, Table 1, figure 2, heatmaps, controls


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a page left mid-load closes its connections: not an error
        pass


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def _serving(folder: Path):
    """`python -m http.server` over `folder`, as the README says to serve the site; yields its base URL."""
    server = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()


def _open(browser, url: str) -> tuple:
    """Load `url` in a fresh page; return the page, its console errors and its failed or non-local requests."""
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    errors, failed = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("response", lambda response: failed.append(f"{response.status} {response.url}") if response.status >= 400 else None)
    page.on("request", lambda request: failed.append(f"not local: {request.url}")
            if not request.url.startswith((url.split("/", 3)[0] + "//" + url.split("/", 3)[2], "data:", "about:")) else None)
    page.goto(url, wait_until="load")
    return page, errors, failed


def _broken_images(page) -> list[str]:
    return page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[book]')")
    if CHROMIUM is None:
        pytest.skip("no Chromium (make install installs Debian's chromium; CI has it)")
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@needs_browser
def test_every_page_of_the_book_loads_in_a_browser_with_its_figures_and_the_landing_page_shows_table_1(browser, tmp_path):
    from kn_utils.report import headline

    site = book.build_book(tmp_path / "book")
    pages = book.book_source(tmp_path / "check")  # the pages the table of contents promises
    with _serving(site) as base:
        for name in pages:
            page, errors, failed = _open(browser, f"{base}{name}.html")
            assert not errors and not failed, (name, errors, failed)
            assert not _broken_images(page), (name, _broken_images(page))
            if name == "index":
                text = page.inner_text("article")
                row = headline(REPO / "results").splitlines()[4]  # Table 1's first rule: random
                assert "all kept" in text and all(cell.strip() in text for cell in row.strip("|").split("|")[1:])
                page.screenshot(path=str(tmp_path / "landing.png"))
            page.close()
    assert (tmp_path / "landing.png").stat().st_size > 10_000


@needs_browser
def test_the_deck_opens_offline_with_its_six_slides_and_figures(browser, tmp_path):
    deck = book.build_slides(tmp_path / "slides")
    with _serving(deck.parent) as base:
        page, errors, failed = _open(browser, f"{base}index.html")
        assert not errors and not failed, (errors, failed)
        assert page.evaluate("document.querySelectorAll('.reveal .slides > section').length") == 6
        page.goto(f"{base}index.html#/3")
        page.wait_for_timeout(500)
        assert not _broken_images(page) and page.evaluate("document.images.length") >= 2
        page.screenshot(path=str(tmp_path / "slide_figure2.png"))
        page.close()
