"""Suite-wide pytest plugin: failure output that never crashes, a missing file reported once.

Owns what every test run relies on, loaded by ``tests/conftest.py``:

- **No INTERNALERROR while printing failures.** On CPython 3.11.0-3.11.7, ``ast.parse`` keeps
  its recursion counter in interpreter-wide state (CPython gh-106905, fixed in 3.11.8). A
  garbage collection in the middle of a parse runs finalizers: here, the Pulumi engine's
  abandoned asyncio tasks log "exception was never retrieved", and 3.11's traceback module
  parses source for its ``^^^^`` markers, so a second parse runs inside pytest's own (the
  same can happen from another thread). The inner parse leaves the counter at its own depth
  and pytest dies with ``SystemError: AST constructor recursion depth mismatch``. On those
  versions every ``ast.parse`` runs behind one lock with the cyclic garbage collector paused,
  so no finalizer and no other thread can start a parse inside another.
- **A missing file fails once.** When a test fails because a file is missing (raised in the
  test, or in a double's server thread, where the test only sees a dropped connection), the
  first such failure names the file; later failures caused by the same file are reported as
  skipped with that name, instead of dozens of identical failures. Works under xdist (the
  controller deduplicates).
- **Example stack values are allowed in tests.** The committed stack files carry example
  values (``acme-games``, ``example.com``...) that a real deploy refuses; tests and Pulumi
  mocks use them on purpose, so the suite opts in with ``ALLOW_EXAMPLE_VALUES_ENV``.
"""

from __future__ import annotations

import ast
import functools
import gc
import os
import socketserver
import sys
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from components.config import ALLOW_EXAMPLE_VALUES_ENV, PUSH_TOKEN_ENV

ROOT = Path(__file__).resolve().parents[1]
#: CPython releases whose ``ast.parse`` is not thread-safe (gh-106905).
AST_RACE = sys.implementation.name == "cpython" and (3, 11) <= sys.version_info[:3] < (3, 11, 8)
_MISSING = "missing_file"

_ast_lock = threading.RLock()
_server_errors: list[BaseException] = []
_reported: set[str] = set()


def _serialised(parse: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(parse)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _ast_lock:
            collecting = gc.isenabled()
            gc.disable()
            try:
                return parse(*args, **kwargs)
            finally:
                if collecting:
                    gc.enable()

    locked.__wrapped_by_suite_guard__ = True  # type: ignore[attr-defined]
    return locked


def _recording(handle_error: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(handle_error)
    def record(self: socketserver.BaseServer, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if error is not None:
            _server_errors.append(error)
        handle_error(self, request, client_address)

    return record


def pytest_configure(config: pytest.Config) -> None:
    """Install the ``ast.parse`` lock, the server-error recorder and the examples opt-in; drop
    an exported GHCR push token."""
    os.environ.setdefault(ALLOW_EXAMPLE_VALUES_ENV, "1")
    # The config reader takes the GHCR push token from the environment (CI's deploy jobs set
    # it); a developer's exported token must not change what the tests see.
    os.environ.pop(PUSH_TOKEN_ENV, None)
    if AST_RACE and not getattr(ast.parse, "__wrapped_by_suite_guard__", False):
        ast.parse = _serialised(ast.parse)
    socketserver.BaseServer.handle_error = _recording(  # type: ignore[method-assign]
        socketserver.BaseServer.handle_error
    )


def _missing_files(error: BaseException | None) -> list[str]:
    """Files named by ``FileNotFoundError``s in ``error``'s chain of causes."""
    found: list[str] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, FileNotFoundError) and error.filename:
            found.append(str(error.filename))
        error = error.__cause__ or error.__context__
    return found


def pytest_runtest_logstart() -> None:
    """Forget server errors of the previous test."""
    _server_errors.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Mark a failure caused by a missing file, naming the file and where it was missed."""
    report = yield
    if not report.failed:
        return report
    raised = call.excinfo.value if call.excinfo is not None else None
    in_test = _missing_files(raised)
    in_servers = [path for error in list(_server_errors) for path in _missing_files(error)]
    paths = in_test or in_servers
    if not paths:
        return report
    path = paths[0]
    where = "the test" if in_test else "a loopback double's server thread (the test saw the effect)"
    outside = "" if Path(path).resolve().is_relative_to(ROOT) else " (outside the repository)"
    message = f"missing file {path}{outside}: FileNotFoundError in {where}"
    report.user_properties.append((_MISSING, path))
    report.sections.append(("missing file", message))
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:  # the short summary line names the file, not the side effect
        crash.message = f"{message}; the test failed with: {crash.message}"
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Let only the first failure per missing file count; later ones become named skips.

    Runs where reports are counted: the xdist controller, or the single process without it.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") or not report.failed:
        return
    path = next((value for name, value in report.user_properties if name == _MISSING), None)
    if path is None:
        return
    if path not in _reported:
        _reported.add(path)
        return
    filename, lineno, _ = report.location
    report.outcome = "skipped"
    report.longrepr = (
        str(ROOT / filename),
        (lineno or 0) + 1,
        f"Skipped: missing file {path} (its first failure above names it)",
    )
