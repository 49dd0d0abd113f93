"""The peer: the call pattern of runpod/pulumi-runpod (the official provider), over GraphQL.

The official provider is a Go plugin that is not on PyPI, so this module reproduces its
per-operation request pattern from its source (provider/resource_*.go, v0.1.x) and sends
those requests, with full-object GraphQL bodies, to a counting GraphQL stub on loopback:

- create: one mutation with the whole object (`saveTemplate`, `saveEndpoint`,
  `secretCreate`, `saveRegistryAuth`, `createNetworkVolume`);
- update: the same upsert mutation with the whole object again; a secret update sends
  `secretValueUpdate` (+ `secretDescriptionUpdate` when it changed) and then re-reads the
  full secret list;
- read (refresh): one `myself { <kind>s }` query that returns *every* object of that kind
  in the account, then picks the one by id; state keeps the declared inputs except env,
  so drift in image, disk or worker counts goes unseen;
- an endpoint takes its container config from a template (GraphQL endpoints reference a
  template id), so the same deployment needs one extra Template resource;
- no retries, no custom diff: a no-op `up` sends nothing (the engine's input diff).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

LIST_FIELD = {
    "template": "podTemplates",
    "endpoint": "endpoints",
    "secret": "secrets",
    "registry": "containerRegistryCreds",
    "volume": "networkVolumes",
}
SAVE_MUTATION = {
    "template": "saveTemplate",
    "endpoint": "saveEndpoint",
    "secret": "secretCreate",
    "registry": "saveRegistryAuth",
    "volume": "createNetworkVolume",
}


@dataclass
class GraphQLStub:
    """A counting GraphQL server holding objects per kind, like RunPod's account view."""

    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {kind: {} for kind in LIST_FIELD}
    )
    log: list[tuple[str, int, int]] = field(default_factory=list)
    drop_after_commit: set[str] = field(default_factory=set)
    """Operations whose next answer is lost after the write committed."""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Apply one operation; return its `data`."""
        kind, verb = operation.split(":")
        table = self.objects[kind]
        if verb == "list":
            return {"myself": {LIST_FIELD[kind]: list(table.values())}}
        if verb == "delete":
            table.pop(variables["id"], None)
            return {"ok": True}
        fields = dict(variables["input"])
        object_id = fields.get("id") or f"{kind}{next(self._ids)}"
        stored = {**table.get(object_id, {}), **fields, "id": object_id}
        stored.pop("value", None)
        stored.pop("password", None)
        table[object_id] = stored
        return {SAVE_MUTATION[kind]: stored}


@contextmanager
def running_stub(stub: GraphQLStub) -> Iterator[str]:
    """Serve `stub` at http://127.0.0.1:<port>/graphql."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            request = json.loads(raw)
            with stub._lock:
                data = stub.answer(request["operationName"], request["variables"])
                body = json.dumps({"data": data}).encode()
                stub.log.append((request["operationName"], len(raw), len(body)))
                drop = request["operationName"] in stub.drop_after_commit
                stub.drop_after_commit.discard(request["operationName"])
            if drop:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/graphql"
    finally:
        server.shutdown()
        server.server_close()


def _document(operation: str, variables: dict[str, Any]) -> str:
    # The official provider's documents select every field of the object; the text
    # matters only for its size on the wire.
    names = " ".join(sorted(variables.get("input", {}))) or "id"
    return f"mutation {operation.replace(':', '_')} {{ op {{ {names} }} }}"


class GraphQLPeer:
    """Drives the official provider's call pattern for a set of declared resources."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.state: dict[str, dict[str, Any]] = {}

    def _call(self, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = {
            "operationName": operation,
            "query": _document(operation, variables),
            "variables": variables,
        }
        response = self.session.post(self.url, json=body, timeout=10)
        response.raise_for_status()
        return dict(response.json()["data"])

    def up(self, declared: dict[str, tuple[str, dict[str, Any]]]) -> None:
        """Create what is new, update what changed (engine input diff), delete the rest."""
        for name, (kind, inputs) in declared.items():
            stored = self.state.get(name)
            if stored is None:
                created = self._call(f"{kind}:save", {"input": inputs})[SAVE_MUTATION[kind]]
                self.state[name] = {"kind": kind, "id": created["id"], "inputs": inputs}
            elif stored["inputs"] != inputs:
                self._update(kind, stored, inputs)
        for name in [n for n in self.state if n not in declared]:
            stored = self.state.pop(name)
            self._call(f"{stored['kind']}:delete", {"id": stored["id"]})

    def _update(self, kind: str, stored: dict[str, Any], inputs: dict[str, Any]) -> None:
        if kind == "secret":
            if inputs.get("value") != stored["inputs"].get("value"):
                self._call("secret:save", {"input": {"id": stored["id"], "value": inputs["value"]}})
            if inputs.get("description") != stored["inputs"].get("description"):
                description = {"id": stored["id"], "description": inputs.get("description")}
                self._call("secret:save", {"input": description})
            self._call("secret:list", {})
        else:
            self._call(f"{kind}:save", {"input": {**inputs, "id": stored["id"]}})
        stored["inputs"] = inputs

    def refresh(self) -> None:
        """One list query per resource; only env is taken from the answer (as upstream)."""
        for stored in self.state.values():
            listing = self._call(f"{stored['kind']}:list", {})["myself"]
            found = [o for o in listing[LIST_FIELD[stored["kind"]]] if o["id"] == stored["id"]]
            if found and "env" in found[0] and "env" in stored["inputs"]:
                stored["inputs"] = {**stored["inputs"], "env": found[0]["env"]}
