"""End to end: the HTML report in headless Chromium, and the audit on real HH-RLHF data.

Chromium: Debian's `chromium` package (`apt-get install -y chromium`); skipped when /usr/bin/chromium is
absent. The page logs nothing to the console when it renders well (its own script reports any image
that fails to decode, and its Content-Security-Policy reports any resource it tried to fetch), so any
console line Chromium prints for the page is a failure.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from prefgate.audit import run_audit
from prefgate.report import write_audit_html
from tests.conftest import CHROMIUM

HH = Path(__file__).resolve().parents[3] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,2200"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


@pytest.fixture
def report_page(tmp_path, pairs):
    cats = ["math", "safety", "coding"]
    typed = [replace(p, category=cats[i % 3], rejection_type="wrong_fact" if i % 4 else "unsafe",
                     rejected=p.chosen.upper() if i < 6 else p.rejected) for i, p in enumerate(pairs)]
    return write_audit_html(run_audit(typed), tmp_path / "audit.html")


@pytest.mark.slow
@pytest.mark.needs("chromium")
def test_html_renders_in_chromium_without_console_errors(tmp_path, report_page):
    dom = chromium(tmp_path, "--dump-dom", report_page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_lines(dom.stderr) == []
    assert 'data-rendered="ok"' in dom.stdout  # the load handler ran: every image decoded
    assert 'class="verdict warn"' in dom.stdout

    shot = tmp_path / "audit.png"
    result = chromium(tmp_path, f"--screenshot={shot}", report_page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_lines(result.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a blank page is a few kB


@pytest.mark.slow
@pytest.mark.needs("chromium")
def test_console_errors_are_caught(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><script>console.error("boom")</script></body></html>')
    assert console_lines(chromium(tmp_path, "--dump-dom", page.as_uri()).stderr)


@pytest.mark.slow
@pytest.mark.needs("hh_data")
def test_hh_rlhf_harmless_audit(tmp_path):
    from prefgate.data import read_dataset

    report = run_audit(read_dataset(HH))
    checks = {c["id"]: c for c in report["checks"]}
    assert report["dataset"]["n_records"] == 2312
    assert report["verdict"] == "warn"
    assert checks["length_ratio"]["status"] == "warn"  # ~20% of chosen answers are over 2x the rejected
    assert 0.15 < checks["length_ratio"]["value"] < 0.25
    assert checks["length_bias"]["value"] < 0.5  # harmless: the chosen answer is more often the shorter
    assert checks["shortcut"]["status"] == "pass"
    assert checks["identical"]["status"] == "pass"
    assert checks["contradictions"]["status"] == "pass"
    assert checks["edit_distance"]["details"]["median"] > 0.5
    write_audit_html(report, tmp_path / "hh.html")
