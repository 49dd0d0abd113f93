"""One line for people from a running job's ``/status``: the worker's latest progress update.

Owns: turning the handler's progress updates (``{"stage", "node", "node_type", "title",
"value", "max", "percent", "nodes_done", "nodes_total", "elapsed_s"}``, shown by RunPod as
the ``output`` of an ``IN_PROGRESS`` job) into a line such as ``running KSampler (node 6):
step 12/20 (60 %), node 3 of 8, 4.2 s``. Anything else in ``output`` is shown as it is, so
a worker that reports progress differently is still visible. No I/O.
"""

from __future__ import annotations

import json
from typing import Any


def describe(view: dict[str, Any]) -> str:
    """The line for one ``/status`` body of an unfinished job."""
    status = str(view.get("status", "?"))
    progress = view.get("output")
    if progress is None:
        return status
    if not isinstance(progress, dict) or "stage" not in progress:
        shown = json.dumps(progress, default=str)
        return f"{status} {shown[:200]}"
    parts = [str(progress["stage"])]
    node_type, node = progress.get("node_type"), progress.get("node")
    if node_type or node:
        parts.append(f"{node_type or 'node'} (node {node})")
    details = []
    if isinstance(progress.get("value"), int | float) and isinstance(
        progress.get("max"), int | float
    ):
        percent = progress.get("percent")
        share = f" ({percent} %)" if isinstance(percent, int | float) else ""
        details.append(f"step {progress['value']:g}/{progress['max']:g}{share}")
    done, total = progress.get("nodes_done"), progress.get("nodes_total")
    if isinstance(done, int) and isinstance(total, int) and total:
        details.append(f"node {min(done + 1, total)} of {total}")
    if isinstance(progress.get("outputs"), int):
        details.append(f"{progress['outputs']} output(s)")
    if isinstance(progress.get("elapsed_s"), int | float):
        details.append(f"{progress['elapsed_s']:g} s")
    line = " ".join(parts)
    return f"{status} {line}: {', '.join(details)}" if details else f"{status} {line}"
