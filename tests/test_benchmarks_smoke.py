"""The benchmark runner still runs: ``benchmarks/run.py --quick`` (tiny N, one run each).

No figure is compared with anything here (timings belong to the benchmark, not the tests):
the test only checks that every figure was measured (or says why it was skipped), that the
table and the JSON file are written, and that no process the runner started outlives it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

from tests.support.paths import ROOT


def _processes_using(folder: str) -> list[str]:
    """Processes whose command line or working directory is in ``folder``."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        info = process.info
        text = " ".join(info["cmdline"] or []) + " " + (info["cwd"] or "")
        if folder in text:
            found.append(f"{info['pid']}: {text}")
    return found


def test_quick_benchmark_run_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    unmeasured = {
        key: figure["error"]
        for key, figure in results["figures"].items()
        if figure["median"] is None and "skipped" not in (figure["error"] or "")
    }
    assert unmeasured == {}, done.stderr[-4000:]
    assert results["machine"]["nproc"] >= 1
    assert {target["name"] for target in results["targets"]} >= {
        "first restart <= 12 ms", "crash loop < 5 % of one core",
    }
    assert all(target["met"] is not None for target in results["targets"])
    assert "Targets" in done.stdout and "API start" in done.stdout
    # every router, worker, node and floor process ran in (or with files from) the scratch
    # directory, and the runner stopped each of them by its pid before it exited
    assert _processes_using(results["settings"]["scratch"]) == []
