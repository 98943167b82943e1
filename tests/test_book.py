"""The book: every page executes in quick mode, the build is warning-free, and the
rendered pages work in a headless browser (widgets respond without a kernel)."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _pages() -> list[str]:
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("chapters", []) + [c for p in toc.get("parts", []) for c in p["chapters"]]:
        pages.append(part["file"])
    return pages


def _quick_env() -> dict:
    # the kernel's own inline backend: with MPLBACKEND=Agg, figures would vanish
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    return {**env, "DTP_EQX_QUICK": "1", "JAX_PLATFORMS": "cpu"}


def _book_builds_here() -> bool:
    """Whether `built_book` can build (and so execute) every page in this run."""
    try:
        import jupyter_book  # noqa: F401
    except ImportError:
        return False
    return (BOOK / "_vendor" / "widgets" / "embed-amd.js").exists()


@pytest.mark.parametrize("page", _pages())
def test_page_executes_in_quick_mode(page, monkeypatch):
    if _book_builds_here():
        # each page is executed once per run: the book build below executes every page in
        # quick mode and fails on any error (nb_execution_raise_on_error)
        pytest.skip("executed by test_book_builds_without_warnings")
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nb = jupytext.read(BOOK / f"{page}.md")
    if not any(cell.cell_type == "code" for cell in nb.cells):
        pytest.skip(f"{page} has no code")
    for name, value in _quick_env().items():
        monkeypatch.setenv(name, value)
    start = time.perf_counter()
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str((BOOK / page).parent)}},
    )
    client.execute()
    print(f"{page}: executed in {time.perf_counter() - start:.1f} s (quick mode)")
    errors = [
        output for cell in nb.cells if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.output_type == "error"
        or (output.output_type == "stream" and output.name == "stderr"
            and "Traceback" in output.text)
    ]
    assert errors == []


def test_inline_pages_have_no_removed_cells():
    """Pages whose prose uses {eval} are executed inline by MyST-NB, which skips cells
    tagged remove-cell: values they define would be missing from the text."""
    for page in _pages():
        text = (BOOK / f"{page}.md").read_text()
        if "execution_mode: inline" in text:
            assert "remove-cell" not in text, f"{page}: use remove-input, not remove-cell"
            assert "{glue" not in text, f"{page}: mixes {{glue}} with {{eval}} prose"


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """The book built in quick mode with warnings as errors, into a temporary folder."""
    pytest.importorskip("jupyter_book")
    if not _book_builds_here():
        pytest.skip("book assets missing: run `npm ci --prefix book && python "
                    "book/vendor_assets.py` (make test does)")
    out = tmp_path_factory.mktemp("book")
    shutil.copytree(BOOK, out / "book", ignore=shutil.ignore_patterns("_build", "node_modules"))
    # pages read the committed reproduction results from ../results
    shutil.copytree(ROOT / "results", out / "results", ignore=shutil.ignore_patterns("*.ckpt"))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", str(out / "book"), "-W",
         "-n", "--keep-going"],
        capture_output=True, text=True, env=_quick_env(), timeout=1800,
    )
    return proc, out / "book" / "_build" / "html"


def test_book_builds_without_warnings(built_book):
    proc, html = built_book
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # -W already turns Sphinx warnings into a failure; the kernel's note that it talks
    # over loopback TCP without encryption is harmless and the only one allowed here.
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines()
                if "WARNING" in line and "Kernel is running over TCP" not in line]
    assert warnings == []
    assert (html / "index.html").exists()
    # pages that draw with matplotlib show their figures: inline images, or PNG images
    # in the saved state of their widgets (an explore widget's frames)
    for page in _pages():
        if "plt." in (BOOK / f"{page}.md").read_text():
            rendered = (html / f"{page}.html").read_text()
            assert "_images/" in rendered or '"format": "png"' in rendered, f"{page}: no figure"


class _InlineCode(HTMLParser):
    """The text of every inline `<code>` of a page, and whether it sits inside a link."""

    def __init__(self):
        super().__init__()
        self.links, self.code, self.found = 0, None, []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links += 1
        elif tag == "code" and "literal" in (dict(attrs).get("class") or ""):
            self.code = []

    def handle_endtag(self, tag):
        if tag == "a":
            self.links -= 1
        elif tag == "code" and self.code is not None:
            self.found.append(("".join(self.code), self.links > 0))
            self.code = None

    def handle_data(self, data):
        if self.code is not None:
            self.code.append(data)


def test_library_names_link_to_the_api(built_book):
    """Inline code naming a dtp_eqx object (`fit`, `dtp_eqx.fit(...)`) links to its entry."""
    sys.path.insert(0, str(BOOK / "_ext"))
    try:
        from api_links import library_name, public_names
    finally:
        sys.path.pop(0)
    _, html = built_book
    names = public_names()
    unlinked, linked = [], 0
    for page in _pages():
        if page == "api":
            continue
        parser = _InlineCode()
        parser.feed((html / f"{page}.html").read_text())
        for text, in_link in parser.found:
            if library_name(text, names) is not None:
                linked += in_link
                if not in_link:
                    unlinked.append(f"{page}: {text[:60]}")
    assert unlinked == []
    assert linked > 100, linked  # the pages name the library often


def _launch(pw):
    """Debian's chromium, headless, through Playwright (never a downloaded browser)."""
    return pw.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_RAW_TABLE_ROW = re.compile(r"^\|.*\|.*\|$")
"""A line of rendered text that is a Markdown table row: the table was not rendered."""

_CLIPPED_MATH = """
() => [...document.querySelectorAll('mjx-container[display="true"]')].flatMap(el => {
  // wider than the column it sits in, with no scrollbar of its own or of a parent
  const column = el.closest('article') || document.body;
  const right = el.getBoundingClientRect().left + el.scrollWidth;
  if (right <= column.getBoundingClientRect().right + 1) return [];
  for (let box = el; box && box !== column; box = box.parentElement) {
    const overflow = getComputedStyle(box).overflowX;
    if ((overflow === 'auto' || overflow === 'scroll') && box.scrollWidth > box.clientWidth)
      return [];
  }
  return [el.textContent.slice(0, 60)];
})
"""
"""Display equations that run past the page column's right edge and cannot be scrolled."""


def test_every_citation_is_in_the_bibliography():
    """Each {cite} key of a page is an entry of book/references.bib (the build with -W
    also fails on an unknown key; this says which page and key at once)."""
    entries = set(re.findall(r"^@\w+\{([^,]+),", (BOOK / "references.bib").read_text(), re.M))
    cited = {(page, key.strip()) for page in _pages()
             for keys in re.findall(r"\{cite(?::[pt])?\}`([^`]+)`", (BOOK / f"{page}.md").read_text())
             for key in keys.split(",")}
    assert cited, "no page cites anything"
    assert sorted((page, key) for page, key in cited if key not in entries) == []
    assert {key for _, key in cited} >= {"lee2015dtp", "meulemans2020theoretical"}


def test_code_cells_fit_the_page():
    """Code cell lines stay under 90 columns, so they fit the rendered column."""
    long = []
    for page in _pages():
        inside = False
        for number, line in enumerate((BOOK / f"{page}.md").read_text().splitlines(), 1):
            if line.startswith("```{code-cell}"):
                inside = True
            elif line.startswith("```"):
                inside = False
            elif inside and len(line) > 90:
                long.append(f"{page}.md:{number} ({len(line)} columns)")
    assert long == []


def test_rendered_pages_in_a_browser(built_book):
    proc, html = built_book
    if proc.returncode != 0:
        pytest.skip("the book did not build (see test_book_builds_without_warnings)")
    if not Path(CHROMIUM).exists():
        pytest.skip("browser test: Debian's chromium is not installed "
                    "(apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(html)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    shots = html / "_screenshots"
    shots.mkdir(exist_ok=True)
    pages = [p + ".html" for p in _pages()]
    slider_pages = []
    try:
        time.sleep(0.5)
        with sync_api.sync_playwright() as pw:
            browser = _launch(pw)
            for page_path in pages:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                failed, outside, console_errors = [], [], []
                page.on("requestfailed", lambda r: failed.append(r.url))
                page.on("response", lambda r: failed.append(f"{r.status} {r.url}")
                        if r.status >= 400 else None)
                local = (f"http://127.0.0.1:{port}/", "data:", f"blob:http://127.0.0.1:{port}/")
                page.on("request", lambda r: outside.append(r.url)
                        if not r.url.startswith(local) else None)
                page.on("console", lambda m: console_errors.append(m.text)
                        if m.type == "error" and "invalid theme mode" not in m.text else None)
                page.goto(f"http://127.0.0.1:{port}/{page_path}", wait_until="networkidle")
                page.wait_for_timeout(1000)
                assert failed == [], f"{page_path}: failed requests {failed}"
                assert outside == [], f"{page_path}: requests leaving 127.0.0.1 {outside}"
                assert page.locator(".output_error, .output.traceback").count() == 0
                if page.locator("mjx-container").count() == 0 and "$" in (
                        BOOK / page_path.replace(".html", ".md")).read_text():
                    pytest.fail(f"{page_path}: math did not render")
                page.wait_for_timeout(1000)  # MathJax typesets after the network is idle
                assert page.evaluate(_CLIPPED_MATH) == [], f"{page_path}: math cut off"
                raw = [line for line in page.locator("article").first.inner_text().splitlines()
                       if _RAW_TABLE_ROW.match(line.strip())]
                assert raw == [], f"{page_path}: Markdown table printed as text: {raw[:2]}"
                sliders = page.locator(".widget-slider")
                if sliders.count():
                    slider_pages.append(page_path)
                    # the figure in the same widget as the first slider
                    box = sliders.first.locator(
                        "xpath=ancestor::div[contains(@class, 'widget-box')]"
                        "[.//*[contains(@class, 'widget-image')]][1]"
                    )

                    def shown(box=box):
                        return box.locator(".widget-image:visible").first.get_attribute("src")

                    # every slider of that widget (two for a 2-D grid) changes the figure
                    box_sliders = box.locator(".widget-slider")
                    for k in range(box_sliders.count()):
                        before = shown()
                        handle = box_sliders.nth(k).locator(
                            ".noUi-handle, .ui-slider-handle").first
                        handle.focus()
                        # a slider may start at its last frame: then one step left must
                        # show another figure
                        for key in ("ArrowRight", "ArrowLeft"):
                            page.keyboard.press(key)
                            page.wait_for_timeout(500)
                            if shown() != before:
                                break
                        assert shown() != before, (
                            f"{page_path}: moving slider {k + 1} of "
                            f"{box_sliders.count()} changed nothing")
                page.screenshot(path=str(shots / page_path.replace("/", "__").replace(".html", ".png")),
                                full_page=True)
                assert console_errors == [], f"{page_path}: console errors {console_errors}"
                page.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"screenshots in {shots}; pages with sliders: {slider_pages}")


LAB_PAGE = "02-layer-inverse"
"""The page the JupyterLab test opens: it has live prose ({eval}) and a training widget."""


def test_jupyterlab_opens_runs_and_trains_a_page(tmp_path):
    """`make lab` as a reader uses it: double-click a page, run it, train off the grid."""
    if not Path(CHROMIUM).exists():
        pytest.skip("JupyterLab test: Debian's chromium is not installed "
                    "(apt-get install chromium; .ci/run does)")
    pytest.importorskip("jupyterlab")
    pytest.importorskip("jupyterlab_myst")
    sync_api = pytest.importorskip("playwright.sync_api")
    root = tmp_path / "book"
    shutil.copytree(BOOK, root, ignore=shutil.ignore_patterns("_build", "node_modules",
                                                              "_vendor", "_extra"))
    shutil.copytree(ROOT / "results", tmp_path / "results", ignore=shutil.ignore_patterns("*.ckpt"))
    settings = tmp_path / "lab-settings"
    settings.mkdir()
    shutil.copy(BOOK / "jupyterlab" / "overrides.json", settings / "overrides.json")
    page_file = root / f"{LAB_PAGE}.md"
    before = page_file.read_bytes()
    port, token = _free_port(), "dtp-eqx-test"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip", "127.0.0.1",
         "--port", str(port), "--allow-root", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", f"--LabApp.app_settings_dir={settings}",
         # a workspace of its own: a layout saved by an earlier session would reopen
         # other pages beside this one
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_quick_env(),
    )
    try:
        import urllib.request

        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}",
                                       timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_api.sync_playwright() as pw:
            browser = _launch(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/lab?token={token}")
            item = page.locator(f".jp-DirListing-item[title*='{LAB_PAGE}.md']").first
            item.wait_for(timeout=90_000)
            item.dblclick()
            # the project's settings open it as a notebook, not as text
            page.locator(".jp-NotebookPanel").first.wait_for(timeout=90_000)
            page.wait_for_timeout(2000)
            page.locator(".lm-MenuBar-itemLabel:text-is('Run')").click()
            page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
            page.wait_for_timeout(2000)
            for _ in range(600):  # until no cell is running
                if (page.locator(".jp-InputPrompt:has-text('[*]')").count() == 0 and
                        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count()):
                    break
                page.wait_for_timeout(500)
            page.wait_for_timeout(2000)
            errors = page.locator(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
            ).all_inner_texts()
            assert errors == [], errors[:2]
            panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first
            prose = " ".join(panel.locator(".jp-MarkdownCell").all_inner_texts())
            for raw in ("{glue", "{eval", "{doc}"):
                assert raw not in prose, f"raw MyST role {raw} in the rendered prose"
            assert "falls from 0." in prose  # a number computed by the page, inline
            # a value that is not on the precomputed grid, trained live by the button
            image = page.locator(".widget-image:visible").first
            image.scroll_into_view_if_needed()
            shown = image.get_attribute("src")
            sigma = page.locator(".widget-inline-hbox:has-text('noise σ') input").last
            sigma.fill("0.15")
            sigma.press("Enter")
            button = page.locator("button:has-text('Train and draw')").first
            button.click()
            busy = progress = False
            for _ in range(240):
                busy = busy or button.is_disabled()
                # the explore widget's progress bar, styled "info" while it trains
                progress = progress or page.locator(
                    ".widget-hprogress .progress-bar-info:visible").count() > 0
                if page.locator(".widget-image:visible").first.get_attribute("src") != shown:
                    break
                page.wait_for_timeout(500)
            assert busy, "the button did not disable itself while training"
            # the bar moved while it trained, or (a fast training) stands full at the end
            bars = page.locator(".widget-hprogress")
            progress = progress or page.locator(
                ".widget-hprogress .progress-bar-success:visible").count() > 0
            assert progress, ("no progress bar showed while training: "
                              f"{bars.first.inner_html() if bars.count() else 'none'}")
            assert page.locator(".widget-image:visible").first.get_attribute("src") != shown, \
                "training off the grid drew no new figure"
            page.screenshot(path=str(tmp_path / "jupyterlab.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert page_file.read_bytes() == before, f"{LAB_PAGE}.md was rewritten"
