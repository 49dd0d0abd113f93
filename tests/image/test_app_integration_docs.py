"""docs/app-integration.md tells the app team what the worker really accepts and returns.

Templates and parameters, LoRA limits, error types, the output fields that make an asset
again, the progress fields and the webhook's retry policy are read from the code and the job
stand-in, and must each appear in the doc.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

from worker import handler, templates

from tests.fakes.runpod_jobs import JobApiEmulator

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "app-integration.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    parts = re.split(r"^## ", DOC, flags=re.MULTILINE)
    found = [part for part in parts if part.startswith(title)]
    assert found, f"no section {title!r}"
    return found[0]


def test_every_template_has_a_row_with_its_params_loras_and_groups() -> None:
    """One row per template: each parameter, whether it takes loras, each model group."""
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in _section("Templates and parameters").splitlines()
        if line.startswith("| `")
    }
    assert set(rows) == set(templates.TEMPLATES)
    for template in templates.TEMPLATES.values():
        row = rows[template.name]
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        for param in template.params:
            assert f"`{param.name}`" in cells[2], f"{template.name}: {param.name}"
        takes = template.no_loras is None
        assert cells[3].startswith("yes") == takes, f"{template.name}: loras column"
        for variant in template.variants.values():
            for group in variant.groups:
                assert f"`{group}`" in cells[4], f"{template.name}: group {group}"


def test_lora_limits_and_targets_are_the_codes() -> None:
    """The count, the strength range and the WAN experts in the doc are the code's."""
    text = _section("Style models (LoRAs)")
    assert f"up to {templates.MAX_LORAS} LoRAs" in text
    low, high = templates.LORA_STRENGTH
    assert f"`strength`: {low:g}-{high:g}" in text
    assert set(templates.TEMPLATES["wan22_t2v"].lora_target_names) == {"high", "low"}
    assert "`high`, `low` or `both`" in text
    for name, template in templates.TEMPLATES.items():
        if template.no_loras is None:
            assert f"`{name}`" in text, name


def test_every_error_type_is_explained() -> None:
    """Each error_type the handler can return has a row in the app's table."""
    error_types = typing.get_args(handler.ErrorType)
    table = _section("`/run` + `/status`, not `/runsync`")
    for error_type in error_types:
        assert f"`{error_type}`" in table, error_type


def test_the_output_fields_and_progress_fields_are_documented() -> None:
    """What describe_output adds to an output and what a progress update holds."""
    seeds = _section("Seeds and making an asset again")
    for field_name in ("seed", "batch_index", "template", "params", "loras", "sha256"):
        assert f'"{field_name}"' in seeds or f"`{field_name}`" in seeds, field_name
    sent: list[dict[str, Any]] = []
    progress = handler.Progress(
        {"id": "j"}, lambda _job, update: sent.append(update), interval_s=0.0
    )
    progress.stage("preparing", graph={"6": {"class_type": "KSampler"}})
    progress.comfy_event("execution_start", {})
    progress.comfy_event("progress", {"value": 1, "max": 4, "node": "6"})
    progress.stage("uploading", outputs=1)
    text = _section("Progress and webhooks for long jobs")
    for key in {key for update in sent for key in update}:
        assert f'"{key}"' in text or f"`{key}`" in text, key
    for stage in {update["stage"] for update in sent} | {"queued"}:
        assert f"`{stage}`" in text, stage


def test_the_webhook_policy_in_the_doc_is_the_stand_ins() -> None:
    """2 retries, 10 s apart, until a 200: the stand-in's defaults say the same."""
    text = _section("Progress and webhooks for long jobs")
    assert "retried up to 2 more times, 10 s apart" in text
    emulator = JobApiEmulator()
    assert emulator.webhook_retry_delay_s == 10.0
    source = (ROOT / "tests" / "fakes" / "runpod_jobs.py").read_text(encoding="utf-8")
    assert "for attempt in range(1, 4):" in source
