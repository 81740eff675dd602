"""A real headless Chromium (Debian's ``chromium``, driven by Playwright) against ``autoresearch serve``
while the daemon runs experiments: rows, a new row without a reload, a row's diff, the run in flight,
and hostile descriptions, notes and log lines that must stay text."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST_TRAIN, cli, make_repo
from tests.web.conftest import daemon, serving

pytestmark = pytest.mark.slow

PLANT = '<script>window.__pwned = "script"</script><img src=x onerror="window.__pwned = \'img\'">'
# Each call: LR a bit closer to 0.1 (a real gain), a hostile description and hostile notes.
AGENT = f"""\
import re, sys
from pathlib import Path
target = Path(sys.argv[1])
text = target.read_text()
lr = float(re.search(r"^LR = ([0-9.]+)", text, re.M).group(1))
new = round(0.1 + (lr - 0.1) * 0.6, 6)
target.write_text(re.sub(r"^LR = .*$", lambda m: f"LR = {{new}}  # " + {PLANT!r}, text, count=1, flags=re.M))
Path(".autoresearch-description").write_text({PLANT!r} + f" LR {{lr}} -> {{new}}")
Path(".autoresearch-notes").write_text("notes " + {PLANT!r})
"""
# Slow enough to be seen in flight; its log plants markup too.
TRAIN = FAST_TRAIN.replace("SLEEP = 0.05", "SLEEP = 4").replace(
    'time.sleep(SLEEP)\nprint("step 1/1")', f'print("step 1/1")\nprint({PLANT!r}, flush=True)\ntime.sleep(SLEEP)')
assert "flush=True)\ntime.sleep(SLEEP)" in TRAIN

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT_ENV = "AUTORESEARCH_DASHBOARD_SCREENSHOT"


def test_the_dashboard_follows_a_running_daemon_in_a_real_browser(tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is not installed (apt-get install chromium); .ci/run installs it"
    repo = make_repo(tmp_path / "research", train=TRAIN, extra={"agent.py": AGENT})
    init = cli("init", str(repo), "--tag", "web", "--runner", "process", "--budget", "20")
    assert init.returncode == 0, init.stderr
    env = {"AUTORESEARCH_AGENT": "command",
           "AUTORESEARCH_COMMAND_AGENT__COMMAND": f"{sys.executable} agent.py {{target}}"}
    with daemon(repo, "--max-experiments", "30", env=env) as run, serving(repo) as served, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        errors: list[str] = []
        page = None
        try:
            # CSP off: the page's own escaping is what is tested here (the CSP is a second layer, test_http).
            page = browser.new_page(viewport={"width": 1200, "height": 1500}, bypass_csp=True)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(served.url)

            # The lanes panel shows the run in flight, with its budget and its log's tail.
            page.wait_for_function("""() => [...document.querySelectorAll('#lanes .lane[data-n]')].some(
                lane => lane.querySelector('.elapsed').textContent.startsWith('training')
                        && lane.textContent.includes('of 20 s'))""", timeout=90_000)
            page.wait_for_function("""() => [...document.querySelectorAll('#lanes pre.log')].some(
                pre => pre.textContent.includes('step 1/1'))""", timeout=60_000)

            # The table shows the rows; the next experiment's row appears in this same document.
            page.wait_for_selector("#rows tbody tr.row", timeout=90_000)
            page.evaluate("window.__sameDocument = true")
            before = page.locator("#rows tbody tr.row").count()
            page.wait_for_function(f"document.querySelectorAll('#rows tbody tr.row').length > {before}",
                                   timeout=90_000)
            assert page.evaluate("window.__sameDocument") is True  # no reload happened

            # A row opens its diff against its parent.
            planted_row = page.locator("#rows tbody tr.row", has_text="LR 0.5 ->").first
            planted_row.click()
            page.wait_for_function("""() => { const d = document.querySelector('tr.detail pre.diff');
                return d && d.textContent.includes('-LR = 0.5')
                         && d.textContent.includes('+LR = 0.34  # <script>'); }""")
            page.wait_for_function("document.querySelector('#chart').naturalWidth > 0")
            assert "judge:" in page.locator("tr.detail h3").first.text_content()

            # The planted markup is shown as text and never ran.
            assert PLANT in planted_row.locator("td.description").text_content()
            assert PLANT in page.locator("#notes").text_content()
            chart = page.request.get(served.url + "chart.svg").text()
            assert "<script" not in chart and "onerror" not in chart  # labels are drawn as glyph paths
            assert page.evaluate("window.__pwned") is None
            assert page.locator("img[src='x']").count() == 0
            assert page.evaluate("[...document.scripts].every(s => s.src.endsWith('/static/app.js'))")
            assert not errors, errors

            assert page.locator("#agent-facts dd").first.text_content() == "command"  # the daemon's, from the journal

            # The picture for the README, preferably with a run in flight (checked above; not again here).
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_function("""() => [...document.querySelectorAll('#lanes pre.log')].some(
                    pre => pre.textContent.includes('step 1/1'))""", timeout=30_000)
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get(SCREENSHOT_ENV):
                shutil.copy(shot, os.environ[SCREENSHOT_ENV])

            # Usable at phone width: nothing wider than the screen.
            page.set_viewport_size({"width": 390, "height": 800})
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
        finally:
            print("serve:", served.log()[-4000:], "page errors:", errors, "lanes:",  # shown when it failed
                  page.locator("#lanes").text_content() if page is not None else None, sep="\n")
            browser.close()
        assert run.poll() is None or run.returncode == 0
