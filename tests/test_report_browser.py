"""``synth report`` in a real browser: Debian's chromium, headless, started by the test (CI installs it, see .ci/run).

The page must render with no console message at all (no error, no warning, no log), draw its plotly charts
(their JS is inlined: the page loads nothing from the network), and show the store's funnel numbers.
The run uses the fake engine: this tests the report, not an engine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import duckdb
import pytest
from conftest import synth, write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                 reason="chromium is not installed (apt-get install chromium); CI installs it")]

RECIPE = """
recipe rep "report test"
param limit: int = 6
model m = fake(temperature=0.5, max_tokens=32)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=limit) {
  question: str
  answer: str
  gold = final_number(answer)
}
step r = rephrase(seeds, model=m) -> rq
step a = answer(r, model=m, field=rq, n=2)
step v = verify(a, field=final_answer, gold=gold)
step kept = filter(v, where=verified)
"""


class _Funnel(HTMLParser):
    """Collects the data-* attributes of the rows of table#funnel."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.rows: dict[str, tuple[int, int]] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.inside = a.get("id") == "funnel"
        elif tag == "tr" and self.inside and "data-step" in a:
            self.rows[a["data-step"]] = (int(a["data-rows-out"]), int(a["data-failed"]))

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False


def test_report_renders_in_chromium_and_shows_the_store_funnel(project, tmp_path):
    assert CHROMIUM, "CI must have chromium (apt-get install chromium)"
    write(project / "r.synth", RECIPE)
    r = synth("run", "r.synth", "--db", "db.duckdb", "--quiet", cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    r = synth("report", "-o", "report.html", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0, r.stderr
    page = (project / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", page), "the page must not load scripts from anywhere"
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
         (project / "report.html").as_uri()],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    dom = proc.stdout
    assert dom.count('class="main-svg"') >= 3, "plotly did not draw its charts"
    parser = _Funnel()
    parser.feed(dom)
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    run = con.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    store = {s: (ok, failed) for s, ok, failed in con.execute(
        "SELECT rr.step, count(*) FILTER (WHERE r.status='ok'), count(*) FILTER (WHERE r.status='failed') "
        "FROM run_rows rr JOIN rows r USING (row_id) WHERE rr.run_id = ? GROUP BY rr.step", [run]).fetchall()}
    store.setdefault("kept", (0, 0))
    assert parser.rows == store
    assert run in dom and "USD" in dom
