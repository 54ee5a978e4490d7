"""End to end in a real browser: Debian's Chromium, driven by Playwright, against the live
server and a real worker. Slow; CI runs them (`pytest -m browser`)."""

import os
import re
import shutil
from pathlib import Path

import pytest

from executions import runtimes
from executions.examples import VERSION_DEMO

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "artifacts" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.slow]

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def missing() -> str:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if not shutil.which("bwrap"):
        return "bubblewrap is missing, so the worker cannot run scripts"
    absent = [v for v in ("3.9", "3.12") if v not in runtimes.versions("local")]
    if absent:
        return f"Python {', '.join(absent)} is not installed (the seed's demo needs both)"
    return ""


if missing():
    pytest.skip(missing(), allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an event loop running in this thread, so Django takes the
    # test's own (synchronous) ORM calls, such as the database flush after each test, for
    # calls from async code. They are not; say so for as long as the browser is open.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                ],
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def site(browser, live_server, worker, settings):
    settings.THROTTLE_ANON = "1000/min"
    settings.THROTTLE_USER = "1000/min"
    return live_server.url


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems = []
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" or "Content Security Policy" in msg.text
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    yield page
    context.close()
    csp = [p for p in problems if "Content Security Policy" in p or "Refused to" in p]
    assert not csp, f"CSP violations: {csp}"
    assert not problems, f"browser console errors: {problems}"


def type_script(page, script: str) -> None:
    editor = page.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(script)


def wait_for_run(page, status: str | None = None):
    """Wait until the result panel shows a finished run; return its status."""
    badge = page.locator("#result .badge[data-status]")
    page.wait_for_function(
        "() => { const b = document.querySelector('#result .badge[data-status]');"
        " return b && ['completed','failed','timeout','cancelled'].includes(b.dataset.status); }"
    )
    finished = badge.get_attribute("data-status")
    if status:
        assert finished == status, page.locator("#result").inner_text()
    return finished


def test_the_seed_demo_on_312_and_39(page, site):
    page.goto(site + "/")
    assert page.locator(".cm-editor .cm-lineNumbers").count() == 1  # a real code editor
    assert not page.locator("textarea[name=script]").is_visible()
    type_script(page, VERSION_DEMO)
    # What the form posts is what the editor shows (auto-indent must not re-indent a paste).
    assert page.locator("textarea[name=script]").input_value() == VERSION_DEMO

    page.select_option("select[name=python_version]", "3.12")
    page.click("#run-button")
    wait_for_run(page, "completed")
    out = page.locator('#result [data-stream="stdout"]').inner_text()
    assert out.splitlines() == ["An integer greater than 10", "A string: hello", "Something else"]
    assert page.locator("#result .badge").inner_text() == "Completed"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.emulate_media(color_scheme="light")
    page.screenshot(path=str(SCREENSHOTS / "editor-light.png"))
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(150)
    page.screenshot(path=str(SCREENSHOTS / "editor-dark.png"))
    page.emulate_media(color_scheme="light")

    # 3.9 has no match statement; Ctrl+Enter in the editor runs.
    first_id = page.locator("#result .result__id code").inner_text()
    page.select_option("select[name=python_version]", "3.9")
    page.locator(".cm-content").click()
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        "id => { const c = document.querySelector('#result .result__id code');"
        " return c && c.textContent !== id; }",
        arg=first_id,
    )
    wait_for_run(page, "completed")
    errors = page.locator('#result [data-stream="stderr"]').inner_text()
    assert "SyntaxError" in errors
    assert "Exit 1" in page.locator("#result .badge").inner_text()
    assert (
        page.locator("#result [data-testid=explanation]")
        .inner_text()
        .startswith("The script ended with an error")
    )


def test_examples_menu_loads_the_demo(page, site):
    page.goto(site + "/")
    page.click("#examples-menu summary")
    page.click("#examples-menu a[href$='example=version-demo']")
    page.wait_for_function(
        "() => document.querySelector('textarea[name=script]').value.includes('match data')"
    )
    assert page.locator("select[name=python_version]").input_value() == "3.12"
    assert page.url == site + "/"  # loaded in place, no navigation


def test_cancel_a_sleeping_script(page, site, settings):
    settings.LIMITS = {**settings.LIMITS, "wall_time_s": 60, "cpu_time_s": 60}
    page.goto(site + "/")
    type_script(page, "import time\nprint('sleeping', flush=True)\ntime.sleep(50)\n")
    page.click("#run-button")
    page.wait_for_selector("#result .badge[data-status=running]")
    page.click("#result button:has-text('Cancel')")
    wait_for_run(page, "cancelled")
    assert "Cancelled by its owner" in page.locator("#result").inner_text()


def test_html_output_is_shown_as_text(page, site):
    printed = "<script>alert(1)</script><img src=x onerror=alert(2)><b>bold</b>"
    page.goto(site + "/")
    type_script(page, f"print({printed!r})\n")
    page.keyboard.press("Control+Enter")
    wait_for_run(page, "completed")
    assert page.locator('#result [data-stream="stdout"]').inner_text().strip() == printed
    assert page.locator("#result img, #result b, #result script").count() == 0
    # The permalink shows the same text.
    page.click("#result .result__id")
    page.wait_for_url(re.compile(r"/executions/[0-9a-f-]{36}/$"))
    assert page.locator('[data-stream="stdout"]').inner_text().strip() == printed


def test_sign_up_save_a_script_reload_and_open_it(page, site):
    page.goto(site + "/accounts/signup/")
    page.fill("#id_username", "dora")
    page.fill("#id_email", "dora@example.com")
    page.fill("#id_password1", "a-long-pass-42")
    page.fill("#id_password2", "a-long-pass-42")
    page.click("button:has-text('Create account')")
    page.wait_for_url(site + "/")
    assert "Signed in as dora" in page.locator(".site-user").inner_text()

    type_script(page, "print('saved and found')\n")
    page.click("#save-drawer summary")
    page.fill("#id_name", "Found it")
    page.fill("#id_description", "A script to find again")
    page.click("#save-drawer button:has-text('Save')")
    page.wait_for_selector("#save-status:has-text('Saved as')")

    page.reload()
    page.click("nav >> text=Saved scripts")
    page.wait_for_url(site + "/scripts/")
    card = page.locator(".card", has_text="Found it")
    assert "A script to find again" in card.inner_text()
    card.locator("text=Open in editor").click()
    page.wait_for_selector(".cm-content")
    assert "print('saved and found')" in page.locator(".cm-content").inner_text()
    page.click("#run-button")
    wait_for_run(page, "completed")
    assert page.locator('#result [data-stream="stdout"]').inner_text().strip() == "saved and found"


def test_it_works_without_javascript(browser, site):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(site + "/")
    textarea = page.locator("textarea[name=script]")
    assert textarea.is_visible()
    textarea.fill("print('no js here')\n")
    page.click("#run-button")
    page.wait_for_url(re.compile(r"/executions/[0-9a-f-]{36}/$"))
    page.wait_for_selector(
        "#result .badge[data-status=completed]", timeout=20_000
    )  # meta refresh until done
    assert page.locator('[data-stream="stdout"]').inner_text().strip() == "no js here"
    context.close()


# --- issue 12: live output, interactive input, drafts, sharing ------------------------------


def test_output_shows_while_the_run_is_still_running(page, site, settings):
    settings.LIMITS = {**settings.LIMITS, "wall_time_s": 30, "cpu_time_s": 30}
    page.goto(site + "/")
    type_script(
        page,
        "import sys, time\n"
        "print('\\x1b[32mline 0\\x1b[0m')\n"
        "print('warned', file=sys.stderr)\n"
        "for i in range(1, 10):\n"
        "    time.sleep(0.3)\n"
        "    print(f'line {i}')\n",
    )
    page.click("#run-button")
    # The first line is on the page while the badge still says Running.
    page.wait_for_function(
        "() => { const b = document.querySelector('#result .badge[data-status]');"
        " const c = document.querySelector('#result [data-stream=console]');"
        " return b && b.dataset.status === 'running' && c && c.textContent.includes('line 0'); }"
    )
    assert page.locator("#result .badge").inner_text().strip() == "Running"
    assert re.fullmatch(r"\d+\.\d s", page.locator("[data-testid=elapsed]").inner_text())
    console = page.locator("#result [data-stream=console]")
    assert console.locator(".t-fg-green").inner_text() == "line 0"  # ANSI colour, no escapes
    page.wait_for_function(
        "() => document.querySelector('#result [data-stream=console] .t-stderr')"
    )
    assert "warned" in console.locator(".t-stderr").inner_text()
    wait_for_run(page, "completed")
    out = page.locator('#result [data-stream="stdout"]').inner_text()
    assert out.splitlines() == [f"line {i}" for i in range(10)]
    assert page.locator("#result-announcer").inner_text() == "The run ended: Completed."


def test_interactive_input_round_trip(page, site, settings):
    settings.LIMITS = {**settings.LIMITS, "wall_time_s": 30, "cpu_time_s": 30}
    page.goto(site + "/")
    type_script(
        page,
        "import time\nprint('thinking', flush=True)\ntime.sleep(2)\n"
        "name = input('Name? ')\nprint(f'Hello, {name}!')\n",
    )
    page.check("#id_interactive")
    page.click("#run-button")
    page.wait_for_function(
        "() => { const c = document.querySelector('#result [data-stream=console]');"
        " return c && c.textContent.includes('thinking'); }"
    )
    assert page.locator("#id_input_text").is_hidden()  # not asked for input yet
    page.wait_for_function(
        "() => { const c = document.querySelector('#result [data-stream=console]');"
        " return c && c.textContent.includes('Name?'); }"
    )
    page.wait_for_selector("#id_input_text", state="visible")  # asked: the line shows
    page.keyboard.type("Ad")  # focused when it appeared
    page.wait_for_timeout(800)  # the result polls meanwhile: what is typed stays
    page.keyboard.type("a")
    assert page.locator("#id_input_text").input_value() == "Ada"
    page.press("#id_input_text", "Enter")
    wait_for_run(page, "completed")
    out = page.locator('#result [data-stream="stdout"]').inner_text()
    assert out.strip() == "thinking\nName? Hello, Ada!"
    assert page.locator('#result [data-stream="input"]').inner_text().strip() == "Ada"
    assert page.locator("#id_input_text").count() == 0  # no input line once it ended


def test_reload_restores_the_draft(page, site):
    page.goto(site + "/")
    type_script(page, "print('my unsaved draft')\n")
    page.select_option("select[name=python_version]", "3.9")
    page.reload()
    page.wait_for_selector(".cm-content")
    assert "print('my unsaved draft')" in page.locator(".cm-content").inner_text()
    assert page.locator("textarea[name=script]").input_value() == "print('my unsaved draft')\n"
    assert page.locator("select[name=python_version]").input_value() == "3.9"


def test_picking_an_example_over_changes_asks_first(page, site):
    page.goto(site + "/")
    type_script(page, "print('keep me')\n")
    # The page fixture counts real dialogs as problems: answer "Cancel" in the page instead.
    page.evaluate("window.confirm = (m) => { window.asked = m; return false; }")
    page.click("#examples-menu summary")
    page.click("#examples-menu a[href$='example=version-demo']")
    page.wait_for_timeout(300)
    assert "Replace your script" in page.evaluate("window.asked")
    assert page.locator("textarea[name=script]").input_value() == "print('keep me')\n"


def test_a_share_link_opens_signed_out(page, site, browser, django_user_model):
    django_user_model.objects.create_user("alice", "alice@example.com", "alice-pass-123")
    page.goto(site + "/accounts/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-pass-123")
    page.click("main button[type=submit]")
    page.wait_for_url(site + "/")
    type_script(page, "print('for my teacher')\n")
    page.click("#run-button")
    wait_for_run(page, "completed")
    page.click("#result .result__id")
    page.wait_for_url(re.compile(r"/executions/[0-9a-f-]{36}/$"))
    private = page.url
    page.click("#share button:has-text('Share')")
    link = page.locator("#share-link").input_value()
    assert "/shared/runs/" in link

    other = browser.new_context()
    visitor = other.new_page()
    assert visitor.goto(private).status == 404  # the run itself stays private
    visitor.goto(link)
    assert visitor.locator('[data-stream="stdout"]').inner_text().strip() == "for my teacher"
    assert visitor.locator("#result button").count() == 0  # read-only: no Run again, no Share
    visitor.click("text=Open in editor")
    visitor.wait_for_selector(".cm-content")
    assert "print('for my teacher')" in visitor.locator(".cm-content").inner_text()

    page.click("#share button:has-text('Stop sharing')")
    page.wait_for_selector("#share button:has-text('Share a read-only link')")
    assert visitor.goto(link).status == 404
    other.close()


def test_on_a_phone_run_shows_the_result_and_history_its_times(page, site):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(site + "/")
    type_script(page, "print('from a phone, with a long line that history cuts short')\n")
    page.click("#run-button")
    wait_for_run(page, "completed")
    top = page.evaluate("document.getElementById('result').getBoundingClientRect().top")
    assert 0 <= top < 844, top  # scrolled to, below the editor
    page.goto(site + "/executions/")
    for column in ("Time", "Submitted"):
        box = page.locator(f"#history-list th:has-text('{column}')").bounding_box()
        assert box and box["x"] + box["width"] <= 390, (column, box)  # seen, not scrolled to
    assert page.evaluate(
        "(() => { const h = document.getElementById('history-list');"
        " return h.scrollWidth <= h.clientWidth; })()"
    )


CONTRAST = """(el) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  let back = el;
  while (getComputedStyle(back).backgroundColor.startsWith("rgba(0, 0, 0, 0")) {
    back = back.parentElement;
  }
  const [a, b] = [lum(rgb(getComputedStyle(el).color)),
                  lum(rgb(getComputedStyle(back).backgroundColor))];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_ansi_colours_can_be_read_in_light_and_dark(browser, site, scheme):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    page.goto(site + "/")
    codes = [*range(30, 38), *range(90, 98), *range(40, 48), *range(100, 108)]
    type_script(page, f"for c in {codes}:\n    print(f'\\x1b[{{c}}m{{c}}\\x1b[0m')\n")
    page.click("#run-button")
    wait_for_run(page, "completed")
    spans = page.locator('#result [data-stream="stdout"] span')
    assert spans.count() == len(codes)
    for i in range(len(codes)):
        ratio = spans.nth(i).evaluate(CONTRAST)
        assert ratio >= 3, f"{scheme}: code {codes[i]} has contrast {ratio:.2f}"
    # Bright black is the grey a terminal shows, not the plain text's colour.
    grey, plain = page.evaluate(
        "() => { const s = document.querySelector('#result .t-fg-bright-black');"
        " return [getComputedStyle(s).color, getComputedStyle(s.parentElement).color]; }"
    )
    assert grey != plain
    context.close()


def test_esc_then_tab_leaves_the_editor_as_the_hint_says(page, site):
    page.goto(site + "/")
    assert "Esc then Tab" in page.locator("[data-editor-hint]").inner_text()
    page.locator(".cm-content").click()
    page.keyboard.press("Tab")  # indents
    assert page.evaluate("document.activeElement.closest('.code-editor__host') !== null")
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('.code-editor__host') === null")


def test_a_plot_shows_as_an_image_in_the_result(page, site, settings, tmp_path):
    version = runtimes.default_version()
    if not (ROOT / "runtime-packages" / version / "site" / "matplotlib").is_dir():
        pytest.skip(f"no package set with matplotlib for {version} (manage.py build_runtimes)")
    settings.MEDIA_ROOT = str(tmp_path)
    page.goto(site + "/")
    packages = page.locator("[data-testid=packages]")
    assert f"Packages for Python {version}" in packages.inner_text()
    packages.locator("summary").click()
    assert "matplotlib" in packages.inner_text()
    type_script(
        page,
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\n"
        "open('/tmp/outputs/notes.txt', 'w').write('three points')\n",
    )
    page.select_option("select[name=python_version]", version)
    page.click("#run-button")
    wait_for_run(page, "completed")
    image = page.locator("#result [data-testid=output-image]")
    assert image.get_attribute("src").endswith("/files/figure-1.png")
    # Loaded and decoded: the endpoint served a real PNG to the page's session.
    page.wait_for_function(
        "() => { const i = document.querySelector('#result [data-testid=output-image]');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    link = page.locator("#result [data-testid=output-files] a[download]")
    assert link.inner_text() == "notes.txt"
