"""Every benchmark script still runs to the end, on tiny inputs: a bench that broke (bench/
logging.py's request part did, when roles moved to django-guardian groups) is found by the
suite, not by the next person measuring. Nothing here looks at a figure: no timing assertion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

# (script and tiny arguments, a line its report must contain)
BENCHES = [
    (["bench/crypto_envelope.py", "--seconds", "0.01", "--rounds", "1"], "envelope / raw AES-GCM"),
    (
        ["bench/rotation.py", "--rows", "200", "--configs", "sqlite", "--naive-limit", "50"],
        "naive",
    ),
    (
        [
            "bench/audit.py",
            "--writes",
            "20",
            "--rounds",
            "2",
            "--writers",
            "2",
            "--configs",
            "sqlite",
            "--skip-verify",
        ],
        "record_event",
    ),
    (
        ["bench/logging.py", "--records", "50", "--rounds", "2", "--requests", "3"],
        "ratio full/off",
    ),
    (["bench/run_latency.py", "--runs", "3", "--warmup", "1", "--configs", "embedded"], "run p50"),
]


@pytest.mark.parametrize(("command", "expected"), BENCHES, ids=[b[0][0] for b in BENCHES])
def test_the_benchmark_runs_to_its_report(command: list[str], expected: str, tmp_path: Path):
    env = dict(os.environ)
    # Its own metrics directory: a bench's worker must not write into the test session's.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    (tmp_path / "metrics").mkdir()
    completed = subprocess.run(
        [sys.executable, *command],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:] or completed.stdout[-3000:]
    assert expected in completed.stdout, completed.stdout[-3000:]
