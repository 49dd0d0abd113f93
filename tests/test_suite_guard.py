"""The suite guard (tests/suite_guard.py): failures print without INTERNALERROR, once per file.

Each test runs a small pytest session in a subprocess with the guard loaded, the way
``tests/conftest.py`` loads it for the real suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SERVER_READS_A_MISSING_FILE = """
import http.server, threading, urllib.request, pytest
from pathlib import Path

SPEC = Path(__file__).parent / "gone" / "spec.json"

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = SPEC.read_bytes()  # raises in the server thread
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

@pytest.fixture
def url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()

@pytest.mark.parametrize("n", range(4))
def test_double(url, n):
    urllib.request.urlopen(url, timeout=5).read()

def test_direct_read():
    SPEC.read_text()

def test_unrelated_failure():
    assert 1 == 2
"""

# A garbage collection during pytest's own ast.parse starts a second parse (here from a gc
# callback; in the real suite from asyncio's "exception was never retrieved" finalizers,
# whose log line formats a traceback): on CPython < 3.11.8 the inner parse corrupts the
# counter of the outer one.
PARSE_DURING_GC = """
import ast, gc
import pytest

def _parse_in_gc(phase, info):
    if phase == "start":
        ast.parse("value = compute(1) + compute(2)  # a traceback's caret anchor")

gc.callbacks.append(_parse_in_gc)

def _deep(n):
    if n == 0:
        assert n == 1, "fails on purpose"
    return _deep(n - 1)

@pytest.mark.parametrize("n", range(6))
def test_fails_with_a_deep_traceback(n):
    garbage = [[] for _ in range(5000)]
    for a, b in zip(garbage, garbage[1:]):
        a.append(b)
        b.append(a)
    _deep(25)
"""


def run_session(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest with the guard on one test module; return its output."""
    (tmp_path / "test_module.py").write_text(textwrap.dedent(source), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    plugins = ["-p", "tests.suite_guard", "-p", "no:cacheprovider"]
    options = ["-q", "-ra", "-o", "addopts=", "--rootdir", str(tmp_path)]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, *options, *args, "test_module.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_missing_file_fails_once_naming_it_and_other_failures_stay(
    tmp_path: Path, workers: list[str]
) -> None:
    """Five tests miss the same file (four via a server thread): one failure, four skips."""
    result = run_session(tmp_path, SERVER_READS_A_MISSING_FILE, *workers)
    out = result.stdout
    missing = str(tmp_path / "gone" / "spec.json")
    assert result.returncode == 1, out + result.stderr
    assert "INTERNALERROR" not in out + result.stderr
    assert "2 failed, 4 skipped" in out, out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2, out
    named = f" - missing file {missing} (outside the repository): FileNotFoundError in "
    assert sum(named in line for line in failed) == 1, failed
    reason = f"missing file {missing} (its first failure above names it)"
    skipped = re.findall(r"^SKIPPED \[(\d+)\] .*: (.*)$", out, flags=re.MULTILINE)
    assert sum(int(n) for n, why in skipped if why == reason) == 4, out
    assert "FAILED test_module.py::test_unrelated_failure" in out


def test_failures_print_when_a_parse_starts_inside_pytests_own(tmp_path: Path) -> None:
    """Six failing tests, each printed while garbage collections try to parse: no crash."""
    result = run_session(tmp_path, PARSE_DURING_GC)
    out = result.stdout + result.stderr
    assert "INTERNALERROR" not in out
    assert "recursion depth mismatch" not in out
    assert result.returncode == 1, out
    assert "6 failed" in result.stdout
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 6
    assert all(line.endswith("AssertionError: fails on purpose") for line in failed)
