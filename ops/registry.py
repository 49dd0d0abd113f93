"""A small client for the OCI distribution API (GHCR): does an image exist, read and write tags.

Owns: the token handshake registries use (a ``401`` with ``WWW-Authenticate: Bearer
realm=...,service=...,scope=...``, then a token from the realm, with the GitHub token as
basic credentials when one is given), ``HEAD``/``GET``/``PUT`` of manifests, blob uploads
(``POST`` then ``PUT ?digest=``, skipped when the blob exists) and downloads (GHCR redirects
blob downloads to another host: ``requests`` follows and drops the credentials there),
listing tags page by page (``Link: <...>; rel="next"``). Every error names the call, the
host, the status and the registry's error code and message.

Deliberately small: five calls of the spec (distribution-spec v1.1), not a general client.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

DEFAULT_URL = "https://ghcr.io"
#: What an image manifest may be: multi-arch index or single manifest, OCI or Docker.
IMAGE_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_TIMEOUT_S = 30.0


class RegistryError(Exception):
    """The registry refused a call or could not be reached."""


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass
class Registry:
    """One repository (``owner/name``) on one registry."""

    repository: str
    base_url: str = DEFAULT_URL
    username: str | None = None
    token: str | None = field(default=None, repr=False)
    _bearer: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _session: requests.Session = field(default_factory=requests.Session, init=False, repr=False)

    @classmethod
    def from_env(cls, repository: str, env: Mapping[str, str] | None = None) -> Registry:
        """Credentials from ``GHCR_TOKEN`` (+ ``GHCR_USERNAME``, else ``GITHUB_ACTOR``); the
        registry from ``OCI_REGISTRY_URL`` (default ``https://ghcr.io``)."""
        env = os.environ if env is None else env
        token = env.get("GHCR_TOKEN", "").strip() or None
        user = env.get("GHCR_USERNAME", "").strip() or env.get("GITHUB_ACTOR", "").strip()
        base = env.get("OCI_REGISTRY_URL", "").strip() or DEFAULT_URL
        return cls(repository, base_url=base.rstrip("/"), username=user or "token", token=token)

    @property
    def host(self) -> str:
        """The registry host, as errors and image references name it."""
        return urlsplit(self.base_url).netloc or self.base_url

    # --- plumbing -------------------------------------------------------------------------
    def _scope(self, push: bool) -> str:
        return f"repository:{self.repository}:{'pull,push' if push else 'pull'}"

    def _authenticate(self, challenge: str, scope: str) -> str:
        if not challenge.lower().startswith("bearer "):
            raise RegistryError(
                f"{self.host} asked for {challenge.split(' ', maxsplit=1)[0]} auth, not Bearer"
            )
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryError(f"{self.host} sent a Bearer challenge without a realm")
        query = {"service": params.get("service", self.host), "scope": scope}
        auth = (self.username or "token", self.token) if self.token else None
        try:
            response = self._session.get(realm, params=query, auth=auth, timeout=_TIMEOUT_S)
        except requests.RequestException as exc:
            raise RegistryError(f"GET token from {urlsplit(realm).netloc} failed: {exc}") from exc
        if response.status_code != 200:
            raise RegistryError(
                f"GET token ({scope}) answered {response.status_code} from "
                f"{urlsplit(realm).netloc}: {_detail(response)}"
            )
        body = response.json()
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token answer of {urlsplit(realm).netloc} holds no token")
        return token

    def _request(
        self,
        method: str,
        url: str,
        *,
        push: bool = False,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        scope = self._scope(push)
        for attempt in range(2):
            sent = dict(headers or {})
            if scope in self._bearer:
                sent["Authorization"] = f"Bearer {self._bearer[scope]}"
            try:
                response = self._session.request(
                    method,
                    url,
                    headers=sent,
                    data=data,
                    params=params,
                    timeout=_TIMEOUT_S,
                    allow_redirects=True,
                )
            except requests.RequestException as exc:
                raise RegistryError(
                    f"{method} {urlsplit(url).path} to {self.host} failed: {type(exc).__name__}"
                ) from exc
            challenge = response.headers.get("WWW-Authenticate", "")
            if response.status_code == 401 and attempt == 0 and challenge:
                self._bearer[scope] = self._authenticate(challenge, scope)
                continue
            return response
        return response

    def _url(self, path: str) -> str:
        return f"{self.base_url}/v2/{self.repository}/{path}"

    def _fail(self, method: str, path: str, response: requests.Response) -> RegistryError:
        return RegistryError(
            f"{method} /v2/{self.repository}/{path} answered {response.status_code} from "
            f"{self.host}: {_detail(response)}"
        )

    # --- calls ----------------------------------------------------------------------------
    def has_manifest(self, reference: str, *, accept: str = IMAGE_ACCEPT) -> bool:
        """Whether a manifest (by digest or tag) exists; 404 is False, other errors raise."""
        path = f"manifests/{reference}"
        response = self._request("HEAD", self._url(path), headers={"Accept": accept})
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._fail("HEAD", path, response)

    def manifest(self, reference: str, *, accept: str = OCI_MANIFEST) -> dict[str, Any] | None:
        """A manifest as JSON, or None when there is none (404)."""
        path = f"manifests/{reference}"
        response = self._request("GET", self._url(path), headers={"Accept": accept})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail("GET", path, response)
        try:
            document = response.json()
        except ValueError as exc:
            raise RegistryError(f"GET /v2/{self.repository}/{path}: not JSON") from exc
        if not isinstance(document, dict):
            raise RegistryError(f"GET /v2/{self.repository}/{path}: not a JSON object")
        return document

    def blob(self, digest: str) -> bytes:
        """A blob's bytes, checked against its digest."""
        path = f"blobs/{digest}"
        response = self._request("GET", self._url(path))
        if response.status_code != 200:
            raise self._fail("GET", path, response)
        if sha256(response.content) != digest:
            raise RegistryError(f"GET /v2/{self.repository}/{path}: the bytes do not match")
        return response.content

    def put_blob(self, data: bytes) -> str:
        """Upload ``data`` unless the registry has it; return its digest."""
        digest = sha256(data)
        head = self._request("HEAD", self._url(f"blobs/{digest}"), push=True)
        if head.status_code == 200:
            return digest
        start = self._request("POST", self._url("blobs/uploads/"), push=True)
        if start.status_code != 202 or "Location" not in start.headers:
            raise self._fail("POST", "blobs/uploads/", start)
        location = urljoin(f"{self.base_url}/", start.headers["Location"])
        done = self._request(
            "PUT",
            location,
            push=True,
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if done.status_code != 201:
            raise self._fail("PUT", "blobs/uploads/<session>", done)
        return digest

    def put_manifest(self, tag: str, manifest: Mapping[str, Any]) -> str:
        """Store ``manifest`` under ``tag``; return its digest."""
        data = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        path = f"manifests/{tag}"
        response = self._request(
            "PUT",
            self._url(path),
            push=True,
            data=data,
            headers={"Content-Type": str(manifest.get("mediaType", OCI_MANIFEST))},
        )
        if response.status_code != 201:
            raise self._fail("PUT", path, response)
        return sha256(data)

    def tags(self) -> list[str]:
        """Every tag of the repository, following the ``Link`` header page by page."""
        found: list[str] = []
        url: str | None = self._url("tags/list")
        params: dict[str, str] | None = {"n": "1000"}
        while url:
            response = self._request("GET", url, params=params)
            if response.status_code == 404:
                return found  # no repository yet, so no tags
            if response.status_code != 200:
                raise self._fail("GET", "tags/list", response)
            body = response.json()
            found += [str(tag) for tag in (body.get("tags") or [])]
            following = response.links.get("next", {}).get("url")
            url = urljoin(f"{self.base_url}/", following) if following else None
            params = None
        return found


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no body"
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        return f"{first.get('code', '?')}: {first.get('message', '')}".strip()
    return str(body)[:200]
