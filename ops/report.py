"""Results as people and machines read them: a rich table on stdout, or one JSON document."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

Status = Literal["pass", "fail", "skip"]
_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}


@dataclass(frozen=True)
class Check:
    """One line of a checklist or one gate: what was checked, the verdict, and why."""

    name: str
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """The check failed (a skip is not a failure)."""
        return self.status == "fail"


def all_passed(checks: Iterable[Check]) -> bool:
    """No check failed."""
    return not any(check.failed for check in checks)


def checks_table(title: str, checks: Sequence[Check]) -> Table:
    """A table of checks with coloured verdicts."""
    table = Table(title=title, title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for check in checks:
        style = _STYLE[check.status]
        table.add_row(check.name, f"[{style}]{check.status.upper()}[/]", check.detail)
    return table


def metrics_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column table of named figures."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def check_dicts(checks: Iterable[Check]) -> list[dict[str, Any]]:
    """Checks as JSON-ready dicts."""
    return [asdict(check) for check in checks]


def emit_json(document: dict[str, Any]) -> None:
    """Print exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def stdout_console() -> Console:
    """The console tables go to (stdout, wide enough for CI logs)."""
    return Console(width=None if sys.stdout.isatty() else 140)


def stderr_console() -> Console:
    """The console for progress and messages (stderr, so --json stays clean)."""
    return Console(stderr=True)


def seconds(value: float | None) -> str:
    """Format seconds for a table ("-" when unknown)."""
    return "-" if value is None else f"{value:.2f} s"


def percent(value: float | None) -> str:
    """Format a 0..1 ratio as a percentage ("-" when unknown)."""
    return "-" if value is None else f"{value * 100:.1f} %"


class CamelJson:
    """A dataclass whose ``as_json()`` is its JSON document, keys in camelCase."""

    def as_json(self) -> dict[str, Any]:
        """This value as the JSON object ops prints (``cold_start_s`` -> ``coldStartS``)."""
        document: dict[str, Any] = camel_json(self)
        return document


def camel_json(value: Any) -> Any:
    """``value`` as JSON-ready data: a dataclass becomes an object keyed by its field names in
    camelCase (``cold_start_s`` -> ``coldStartS``), recursively; tuples become lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            _camel(item.name): camel_json(getattr(value, item.name))
            for item in dataclasses.fields(value)
        }
    if isinstance(value, list | tuple):
        return [camel_json(item) for item in value]
    if isinstance(value, dict):
        return {key: camel_json(item) for key, item in value.items()}
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
