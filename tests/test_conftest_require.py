"""`require` (tests/conftest.py), the gate of every test that needs data from outside the repository: a missing
path skips the test on a developer's machine and fails it in CI (CI=true), naming the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

NEEDS_MISSING = '''
from pathlib import Path

from conftest import require


def test_needs_data():
    require(Path("{missing}"), "the example dataset")
'''


def run_pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-c", str(folder / "pytest.ini"),
           str(folder / "test_gen.py")]
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def generated(tmp_path) -> tuple[Path, Path]:
    missing = tmp_path / "nowhere" / "dataset.yaml"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_gen.py").write_text(NEEDS_MISSING.format(missing=missing))
    return tmp_path, missing


@pytest.mark.parametrize("ci", ["true", None, "false"])
def test_missing_data_fails_in_ci_and_skips_elsewhere(generated, ci):
    folder, missing = generated
    proc = run_pytest(folder, ci)
    out = proc.stdout + proc.stderr
    assert f"the example dataset not found at {missing}" in out, out
    if ci == "true":
        assert proc.returncode == 1 and "1 failed" in out and "1 skipped" not in out, out
    else:
        assert proc.returncode == 0 and "1 skipped" in out and "failed" not in out, out


def test_present_data_is_returned(tmp_path):
    from conftest import require

    assert require(tmp_path, "a folder") == tmp_path
