"""`ops health-alert`: one issue per incident, a comment only when the alerts change, closed
when healthy again (against a loopback GitHub REST double)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.github_issues import IssuesDouble, github_issues
from tests.ops.conftest import invoke_json

REPO = "acme/comfyui-runpod"


@pytest.fixture
def github() -> Iterator[IssuesDouble]:
    with github_issues(REPO) as double:
        yield double


def report(path: Path, *failing: tuple[str, str]) -> Path:
    """An `ops health --json` document with these failing checks (the rest pass)."""
    checks: list[dict[str, Any]] = [{"name": "queue", "status": "pass", "detail": "empty"}]
    checks += [{"name": name, "status": "fail", "detail": detail} for name, detail in failing]
    path.write_text(json.dumps({"command": "health", "ok": not failing, "checks": checks}))
    return path


def alert(github: IssuesDouble, path: Path, **env: str) -> tuple[int, dict[str, Any]]:
    environment = {
        "GITHUB_TOKEN": github.token,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": github.base_url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "42",
        "HEALTH_WEBHOOK_URL": f"{github.base_url}/hooks/slack",
        "GH_TOKEN": None,
        **env,
    }
    return invoke_json(["health-alert", "--report", str(path)], environment)


def writes(github: IssuesDouble) -> list[tuple[str, str]]:
    """Writes to the GitHub API (webhook posts are in ``github.hooks``)."""
    return [(m, p.split("?")[0]) for m, p in github.requests if m != "GET" and "/hooks/" not in p]


ERRORS = ("error rate", "30.0 % (> 5.0 %): 3 failed, 0 retried")
SUCCESS = ("success rate", "70.0 % (< 95.0 %): 7 completed, 3 failed")


def test_healthy_without_an_issue_does_nothing(github: IssuesDouble, tmp_path: Path) -> None:
    """No alert and no open issue: no write at all."""
    code, doc = alert(github, report(tmp_path / "h.json"))
    assert (code, doc["action"]) == (0, "healthy")
    assert writes(github) == []
    assert github.hooks == []


def test_an_incident_opens_one_issue_then_stays_quiet_while_unchanged(
    github: IssuesDouble, tmp_path: Path
) -> None:
    """First alert: label + issue + webhook. The same alerts again (other numbers): nothing."""
    code, doc = alert(github, report(tmp_path / "h.json", SUCCESS, ERRORS))
    assert (code, doc["action"], doc["issue"]) == (0, "opened", 1)
    (issue,) = github.open_issues("health-alert")
    assert "success rate: 70.0 %" in issue["body"]
    assert "https://github.com/acme/comfyui-runpod/actions/runs/42" in issue["body"]
    assert len(github.hooks) == 1
    again = report(tmp_path / "h.json", ("success rate", "80.0 % (< 95.0 %)"), ERRORS)
    for _ in range(3):
        code, doc = alert(github, again)
        assert (code, doc["action"]) == (0, "unchanged")
    assert github.comments.get(1, []) == []
    assert writes(github) == [("POST", f"/repos/{REPO}/labels"), ("POST", f"/repos/{REPO}/issues")]
    assert len(github.hooks) == 1


def test_a_change_in_what_fails_comments_once(github: IssuesDouble, tmp_path: Path) -> None:
    """Error rate clears while success stays low: one comment naming what cleared."""
    alert(github, report(tmp_path / "h.json", SUCCESS, ERRORS))
    code, doc = alert(github, report(tmp_path / "h.json", SUCCESS))
    assert (code, doc["action"]) == (0, "commented")
    (comment,) = github.comments[1]
    assert "Cleared: error rate" in comment["body"]
    code, doc = alert(github, report(tmp_path / "h.json", SUCCESS))
    assert doc["action"] == "unchanged"
    assert len(github.comments[1]) == 1


def test_healthy_again_comments_and_closes_the_issue(github: IssuesDouble, tmp_path: Path) -> None:
    """Recovery: one comment, the issue closed; the next healthy run does nothing."""
    alert(github, report(tmp_path / "h.json", SUCCESS))
    code, doc = alert(github, report(tmp_path / "h.json"))
    assert (code, doc["action"], doc["issue"]) == (0, "closed", 1)
    assert github.issues[0]["state"] == "closed"
    assert "Healthy again" in github.comments[1][-1]["body"]
    before = len(github.requests)
    assert alert(github, report(tmp_path / "h.json"))[1]["action"] == "healthy"
    assert writes(github)[-1] == ("PATCH", f"/repos/{REPO}/issues/1")
    assert all(method == "GET" for method, _ in github.requests[before:])
    code, doc = alert(github, report(tmp_path / "h.json", SUCCESS))
    assert (doc["action"], doc["issue"]) == ("opened", 2)


def test_pull_requests_with_the_label_are_not_the_alert_issue(
    github: IssuesDouble, tmp_path: Path
) -> None:
    """GitHub lists pull requests among issues; a labelled PR is never commented or closed."""
    github.labels.append({"name": "health-alert"})
    github.add_pull_request("tune health thresholds", ["health-alert"])
    code, doc = alert(github, report(tmp_path / "h.json", SUCCESS))
    assert (code, doc["action"], doc["issue"]) == (0, "opened", 2)
    assert 1 not in github.comments


def test_a_missing_report_is_an_alert(github: IssuesDouble, tmp_path: Path) -> None:
    """`ops health` that wrote nothing (it crashed or could not start) opens an issue."""
    code, doc = alert(github, tmp_path / "absent.json")
    assert (code, doc["action"], doc["failing"]) == (0, "opened", ["ops health"])
    assert "did not run" in github.issues[0]["body"]


def test_the_state_is_read_from_the_latest_comment_across_pages(
    github: IssuesDouble, tmp_path: Path
) -> None:
    """With more than 100 comments, the state recorded on the second page counts."""
    alert(github, report(tmp_path / "h.json", SUCCESS))
    marker = '<!-- ops-health-state: {"failing": ["error rate"]} -->'
    github.comments[1] = [{"id": n, "body": "chatter"} for n in range(120)]
    github.comments[1].append({"id": 999, "body": f"The alerts changed\n{marker}"})
    code, doc = alert(github, report(tmp_path / "h.json", ERRORS))
    assert (code, doc["action"]) == (0, "unchanged"), doc


def test_bad_credentials_exit_2_naming_the_call_host_and_status(
    github: IssuesDouble, tmp_path: Path
) -> None:
    """A refused token: exit 2, the error names the call, the host, 401 and GitHub's message."""
    code, doc = alert(github, report(tmp_path / "h.json", SUCCESS), GITHUB_TOKEN="wrong")
    assert code == 2
    host = github.base_url.removeprefix("http://")
    assert doc["error"] == (f"GET /repos/{REPO}/issues answered 401 from {host}: Bad credentials")
    assert "wrong" not in json.dumps(doc)
