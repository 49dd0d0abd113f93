"""Stack secrets from the environment: how CI hands Pulumi the secrets no stack file holds.

The committed stack files hold non-secret values only (a test refuses secret keys in them).
CI jobs get each stack secret from their GitHub *environment* as an environment variable
(:data:`SECRETS` maps variable to config key), and this module

- checks offline, before any tool runs, that the stack file plus exactly those variables
  is a valid configuration (the program's own :func:`components.config.validate`, with the
  job's environment, so ``GHCR_PUSH_TOKEN`` counts as it does under ``pulumi up``); a
  missing secret is reported with the variable the job must provide;
- sets each provided value with ``pulumi config set --secret <key> --stack <stack>``, the
  value on standard input (never on a command line, where ``ps`` would show it). The
  encrypted values land in the runner's copy of the stack file only.

``python -m ops stack-secrets --stack <s> [--check-only]``. Exit codes: 0 done, 1 invalid
configuration or a ``pulumi config set`` failed, 2 usage or no Pulumi CLI.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from components.config import (
    RUNPOD_API_KEY,
    SCHEMA_BY_NAME,
    ConfigError,
    stack_file_values,
    validate,
)


@dataclass(frozen=True)
class CiSecret:
    """One stack secret CI provides: the environment variable and the config key it sets."""

    env: str
    key: str


#: Every stack secret CI can provide. ``image.registryToken`` is not here: CI pushes with the
#: job's own token through ``GHCR_PUSH_TOKEN``, which the program reads directly.
SECRETS: tuple[CiSecret, ...] = (
    CiSecret("CLOUDFLARE_API_TOKEN", "cloudflare.apiToken"),
    CiSecret("APP_GITHUB_TOKEN", "app.githubToken"),
    CiSecret("RUNPOD_API_KEY", RUNPOD_API_KEY),
    CiSecret("GHCR_PULL_TOKEN", "image.pullToken"),
    CiSecret("VIDEO_POD_COMFY_PASSWORD", "videoPod.comfyPassword"),
    CiSecret("HF_TOKEN", "models.hfToken"),
    CiSecret("APP_RUNPOD_API_KEY", "app.runpodApiKey"),
    CiSecret("SCENARIO_API_KEY", "app.scenarioApiKey"),
    CiSecret("SCENARIO_SECRET_API_KEY", "app.scenarioSecretApiKey"),
)
ENV_BY_KEY = {secret.key: secret.env for secret in SECRETS}
_SECRET_FIX = re.compile(r"pulumi config set --secret (\S+)")


def is_secret_key(key: str) -> bool:
    """Whether ``key`` (project key or ``runpod:apiKey``) is a secret."""
    return key == RUNPOD_API_KEY or (key in SCHEMA_BY_NAME and SCHEMA_BY_NAME[key].secret)


def provided(env: Mapping[str, str]) -> dict[str, str]:
    """Config key -> value for every secret variable set (non-empty) in ``env``."""
    return {s.key: env[s.env] for s in SECRETS if env.get(s.env, "").strip()}


def problems(root: Path, stack: str, env: Mapping[str, str]) -> list[str]:
    """What is wrong with ``Pulumi.<stack>.yaml`` plus the secrets ``env`` provides."""
    stack_file = root / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        return [f"no {stack_file.name} in {root}"]
    values, secure = stack_file_values(root, stack)
    found = [
        f"{key} is a secret but {stack_file.name} holds it in plaintext: remove it "
        f"(pulumi config rm {key} --stack {stack}) and provide {ENV_BY_KEY.get(key, key)} "
        "in the job's environment"
        for key in sorted(values)
        if is_secret_key(key) and key not in secure
    ]
    merged = {**values, **provided(env)}
    try:
        config = validate(merged, stack=stack, root=root, env=env)
    except ConfigError as error:
        return found + [_with_ci_hint(problem) for problem in error.problems]
    manages_runpod = config.serverless.endpoint_id is None or config.video_pod.enabled
    if manages_runpod and RUNPOD_API_KEY not in merged:
        # The program's check lets the provider fall back to $RUNPOD_API_KEY, which a CI job
        # hands only to its secrets step: pulumi up needs the key in the stack's config.
        found.append(
            f"{RUNPOD_API_KEY} is not set, and the stack manages RunPod objects (the endpoint"
            f"{' and the video pod' if config.video_pod.enabled else ''}): in CI the job's "
            f"environment must provide {ENV_BY_KEY[RUNPOD_API_KEY]} (docs/DEPLOYMENT.md)"
        )
    return found


def _with_ci_hint(problem: str) -> str:
    match = _SECRET_FIX.search(problem)
    if match and match[1] in ENV_BY_KEY:
        return (
            f"{problem} (in CI: the job's environment must provide {ENV_BY_KEY[match[1]]}, "
            "see docs/DEPLOYMENT.md)"
        )
    return problem


Runner = Callable[[Sequence[str], str], tuple[int, str]]


def run_with_stdin(argv: Sequence[str], stdin: str) -> tuple[int, str]:
    """Run ``argv`` with ``stdin`` as its input; return the exit code and its stderr."""
    done = subprocess.run(list(argv), input=stdin, text=True, capture_output=True, check=False)
    return done.returncode, (done.stderr or done.stdout).strip()


class SetError(Exception):
    """``pulumi config set`` failed for one key."""


def apply(stack: str, env: Mapping[str, str], run: Runner = run_with_stdin) -> list[str]:
    """Set every provided secret in the stack's config; return the keys set (never values)."""
    done = []
    for key, value in provided(env).items():
        code, detail = run(("pulumi", "config", "set", "--secret", key, "--stack", stack), value)
        if code != 0:
            raise SetError(
                f"pulumi config set --secret {key} --stack {stack} failed (exit {code}): "
                f"{detail.replace(value, '[secret]') if value else detail}"
            )
        done.append(key)
    return done
