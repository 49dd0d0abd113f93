"""The health workflow's notifier: one issue per incident, a comment only when the alerts change.

Owns: turning an ``ops health --json`` report (or its absence) into an alert state (the set
of failing checks), and keeping one open GitHub issue labelled ``health-alert`` in step with
it over GitHub's REST API:

- failing, no open issue: create the label if needed, open an issue listing the alerts;
- failing, open issue, same failing checks as its last recorded state: nothing (no comment
  every 15 minutes while an incident lasts);
- failing, open issue, other failing checks: one comment saying what changed;
- healthy, open issue: a comment that it is healthy again, then close the issue;
- healthy, no open issue: nothing.

The state an issue is in is recorded in the issue itself (a hidden ``<!-- ops-health-state:
{...} -->`` line in its body or latest comment), so the workflow keeps no other store. The
optional webhook (Slack-compatible ``{"text": ...}``) is posted on the same changes only.
Every API error names the call, the host, the status and GitHub's message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

LABEL = "health-alert"
TITLE = "Health alert: prod serverless endpoint"
RUNBOOK = "docs/rollout.md (emergency rollback) and docs/troubleshooting.md"
_MARKER = re.compile(r"<!-- ops-health-state: (\{.*?\}) -->")
_TIMEOUT_S = 30.0


class AlertError(Exception):
    """GitHub or the webhook could not be reached or refused a call."""


@dataclass(frozen=True)
class AlertState:
    """What is failing now: check names (the state) and their details (for people)."""

    failing: tuple[str, ...]
    details: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        """Nothing fails."""
        return not self.failing

    def marker(self) -> str:
        """The hidden line that records this state in the issue."""
        return f"<!-- ops-health-state: {json.dumps({'failing': list(self.failing)})} -->"


def state_from_report(text: str | None) -> AlertState:
    """The alert state of an ``ops health --json`` document; no or bad document is an alert."""
    if text is None or not text.strip():
        return AlertState(("ops health",), ("ops health: did not run (no report); see the log",))
    try:
        document = json.loads(text)
    except ValueError:
        return AlertState(("ops health",), ("ops health: its report is not JSON; see the log",))
    if not isinstance(document, dict):
        return AlertState(("ops health",), ("ops health: its report is not a JSON object",))
    if document.get("error"):
        return AlertState(("ops health",), (f"ops health: could not run: {document['error']}",))
    failing = [
        check
        for check in document.get("checks") or []
        if isinstance(check, dict) and check.get("status") == "fail"
    ]
    names = tuple(sorted({str(check.get("name")) for check in failing}))
    details = tuple(f"{check.get('name')}: {check.get('detail')}" for check in failing)
    return AlertState(names, details)


def recorded_state(texts: list[str]) -> tuple[str, ...] | None:
    """The failing checks recorded by the last marker in ``texts`` (body, then comments)."""
    for text in reversed(texts):
        found = _MARKER.findall(text or "")
        if found:
            try:
                failing = json.loads(found[-1]).get("failing")
            except ValueError:
                continue
            if isinstance(failing, list):
                return tuple(sorted(str(name) for name in failing))
    return None


@dataclass
class GitHubIssues:
    """The few issue calls the notifier needs, on one repository."""

    api_url: str
    repository: str
    token: str

    @property
    def host(self) -> str:
        """The API host, as errors name it."""
        return urlsplit(self.api_url).netloc or self.api_url

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        call = f"{method} {urlsplit(url).path}"
        try:
            response = requests.request(
                method,
                url,
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": "2022-11-28",
                    "User-Agent": "comfyui-runpod-ops",
                },
                timeout=_TIMEOUT_S,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise AlertError(f"{call} to {self.host} failed: {type(exc).__name__}") from exc
        return response

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call; a non-2xx answer raises :class:`AlertError` with GitHub's message."""
        response = self._call(method, f"{self.api_url}/repos/{self.repository}{path}", json=body)
        if response.status_code >= 400:
            raise AlertError(
                f"{method} /repos/{self.repository}{path} answered {response.status_code} "
                f"from {self.host}: {_message(response)}"
            )
        return response.json() if response.content else None

    def pages(self, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, following ``Link: rel="next"``."""
        url: str | None = f"{self.api_url}/repos/{self.repository}{path}"
        query: dict[str, str] | None = {**params, "per_page": "100"}
        while url:
            response = self._call("GET", url, params=query)
            if response.status_code >= 400:
                raise AlertError(
                    f"GET /repos/{self.repository}{path} answered {response.status_code} from "
                    f"{self.host}: {_message(response)}"
                )
            items = response.json()
            if not isinstance(items, list):
                raise AlertError(f"GET /repos/{self.repository}{path} did not answer a list")
            yield from (item for item in items if isinstance(item, dict))
            url = response.links.get("next", {}).get("url")
            query = None  # the next link carries the query

    def ensure_label(self, name: str) -> None:
        """Create the label; one that exists already is fine."""
        try:
            self.request(
                "POST",
                "/labels",
                {"name": name, "color": "B60205", "description": "ops health alert"},
            )
        except AlertError as error:
            if "already_exists" not in str(error):
                raise


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no body"
    if isinstance(body, dict):
        text = str(body.get("message") or body)
        codes = [e.get("code") for e in body.get("errors") or [] if isinstance(e, dict)]
        return f"{text} ({', '.join(map(str, codes))})" if codes else text
    return str(body)[:200]


@dataclass(frozen=True)
class Outcome:
    """What the notifier did."""

    action: str
    issue: int | None
    failing: tuple[str, ...]


Poster = Callable[[str, str], None]


def post_webhook(url: str, text: str) -> None:
    """Post ``{"text": ...}`` to a Slack-compatible webhook."""
    try:
        response = requests.post(url, json={"text": text}, timeout=_TIMEOUT_S)
    except requests.RequestException as exc:
        raise AlertError(
            f"webhook POST to {urlsplit(url).netloc} failed: {type(exc).__name__}"
        ) from exc
    if response.status_code >= 400:
        raise AlertError(
            f"webhook POST to {urlsplit(url).netloc} answered {response.status_code}: "
            f"{response.text[:200]}"
        )


def notify(
    state: AlertState,
    github: GitHubIssues,
    *,
    run_url: str,
    label: str = LABEL,
    webhook: str | None = None,
    post: Poster = post_webhook,
) -> Outcome:
    """Bring the repository's alert issue in step with ``state`` (see the module doc)."""
    open_issues = [
        issue
        for issue in github.pages("/issues", {"state": "open", "labels": label})
        if "pull_request" not in issue
    ]
    issue = max(open_issues, key=lambda i: int(i["number"]), default=None)
    lines = "\n".join(f"- {detail}" for detail in state.details)
    if issue is None:
        if state.healthy:
            return Outcome("healthy", None, ())
        github.ensure_label(label)
        body = (
            f"`ops health` alerts against prod:\n{lines}\n\nRun: {run_url}\n"
            f"Runbook: {RUNBOOK}\n\n{state.marker()}"
        )
        created = github.request(
            "POST", "/issues", {"title": TITLE, "body": body, "labels": [label]}
        )
        number = int(created["number"])
        _post(webhook, post, f"Health alert opened (#{number}): {'; '.join(state.details)}")
        return Outcome("opened", number, state.failing)
    number = int(issue["number"])
    comments = [str(c.get("body") or "") for c in github.pages(f"/issues/{number}/comments", {})]
    before = recorded_state([str(issue.get("body") or ""), *comments])
    if state.healthy:
        body = f"Healthy again: every `ops health` check passes. Run: {run_url}\n\n{state.marker()}"
        github.request("POST", f"/issues/{number}/comments", {"body": body})
        github.request(
            "PATCH", f"/issues/{number}", {"state": "closed", "state_reason": "completed"}
        )
        _post(webhook, post, f"Health alert #{number} closed: healthy again ({run_url})")
        return Outcome("closed", number, ())
    if before == state.failing:
        return Outcome("unchanged", number, state.failing)
    cleared = sorted(set(before or ()) - set(state.failing))
    note = f"\nCleared: {', '.join(cleared)}" if cleared else ""
    body = f"The alerts changed:\n{lines}{note}\n\nRun: {run_url}\n\n{state.marker()}"
    github.request("POST", f"/issues/{number}/comments", {"body": body})
    _post(webhook, post, f"Health alert #{number} changed: {'; '.join(state.details)}")
    return Outcome("commented", number, state.failing)


def _post(webhook: str | None, post: Poster, text: str) -> None:
    if webhook:
        post(webhook, text)


def read_report(path: Path) -> str | None:
    """The report's text, or None when the health step wrote none."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None
