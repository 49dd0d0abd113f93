"""The pod's authenticating reverse proxy: renders its nginx config and password file.

Owns: turning ``image/proxy/nginx.conf.template`` into a config that publishes ComfyUI
(listening on loopback) on the pod's HTTP port behind HTTP basic auth with WebSocket
upgrades, and writing the ``htpasswd`` file from ``COMFYUI_PASSWORD`` (a RunPod secret the
stack sets from ``videoPod.comfyPassword``) as a salted SHA-1 (``{SSHA}``, which nginx's
``auth_basic_user_file`` reads). The password comes from the environment only, never from
the command line, and is never printed. Deliberately does not start nginx: ``start.sh``
does, so its output is prefixed and it is stopped with the pod.

Exit codes: 0 written; 2 ``COMFYUI_PASSWORD`` unset or a bad flag.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_TEMPLATE = Path(__file__).resolve().parent.parent / "proxy" / "nginx.conf.template"
DEFAULT_USER = "comfy"
#: Shortest password accepted: a pod URL is public, so the password is the only lock.
MIN_PASSWORD = 12


def ssha(password: str, salt: bytes | None = None) -> str:
    """``{SSHA}base64(sha1(password + salt) + salt)`` as RFC 2307 and nginx define it."""
    salt = salt if salt is not None else secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def render(template: str, *, listen: str, upstream: str, htpasswd: Path, run_dir: Path) -> str:
    """The nginx config for these addresses and files."""
    values = {
        "@LISTEN@": listen,
        "@UPSTREAM@": upstream,
        "@HTPASSWD@": str(htpasswd),
        "@RUN_DIR@": str(run_dir),
    }
    for placeholder, value in values.items():
        if not value or any(c in value for c in ";{}\n\"' "):
            raise ValueError(f"{placeholder.strip('@').lower()} {value!r} is not usable here")
        template = template.replace(placeholder, value)
    return template


def write(
    out_dir: Path,
    *,
    template: Path,
    listen: str,
    upstream: str,
    user: str,
    password: str,
) -> Path:
    """Write ``nginx.conf`` and ``htpasswd`` into ``out_dir``; return the config's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir.chmod(0o711)
    htpasswd = out_dir / "htpasswd"
    temporary = out_dir / ".htpasswd.tmp"
    # nginx's worker processes (not root) read it at request time; it holds a salted hash.
    temporary.write_text(f"{user}:{ssha(password)}\n", encoding="utf-8")
    temporary.chmod(0o644)
    temporary.replace(htpasswd)
    config = out_dir / "nginx.conf"
    config.write_text(
        render(
            template.read_text(encoding="utf-8"),
            listen=listen,
            upstream=upstream,
            htpasswd=htpasswd,
            run_dir=out_dir,
        ),
        encoding="utf-8",
    )
    return config


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """``python -m worker.proxy --out-dir D --listen 0.0.0.0:8188 --upstream 127.0.0.1:18188``."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="python -m worker.proxy",
        description="Write the nginx config and password file of ComfyUI's proxy.",
        epilog="environment: COMFYUI_PASSWORD (required), COMFYUI_USER (default comfy)",
    )
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--listen", required=True, help="address:port nginx listens on")
    parser.add_argument("--upstream", required=True, help="ComfyUI's loopback address:port")
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    args = parser.parse_args(argv)
    password = env.get("COMFYUI_PASSWORD", "")
    user = env.get("COMFYUI_USER", "").strip() or DEFAULT_USER
    if len(password) < MIN_PASSWORD:
        sys.stderr.write(
            f"[proxy] COMFYUI_PASSWORD is unset or shorter than {MIN_PASSWORD} characters: "
            "set videoPod.comfyPassword (pulumi config set --secret videoPod.comfyPassword "
            "<password> --stack <stack>)\n"
        )
        return 2
    if ":" in user or not user.isprintable():
        sys.stderr.write("[proxy] COMFYUI_USER must be printable and contain no ':'\n")
        return 2
    try:
        config = write(
            args.out_dir,
            template=args.template,
            listen=args.listen,
            upstream=args.upstream,
            user=user,
            password=password,
        )
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"[proxy] {exc}\n")
        return 2
    sys.stdout.write(f"{config}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
