"""Fetching an input image from a URL a job names, without letting the job steer the worker.

Owns: the address policy (only public unicast addresses; loopback, private, link-local, the
169.254.169.254 metadata service, shared, reserved and multicast ranges are refused, IPv4
embedded in IPv6 included), resolving a host name once and connecting to exactly the
addresses that were checked (so DNS cannot answer differently between check and connect),
following at most :data:`MAX_REDIRECTS` redirects with every hop checked again (scheme and
addresses), a hard deadline for the whole download (a watchdog shuts the socket down, so a
server dripping one byte a second cannot outlast it), a size limit, and one uniform refusal
whatever went wrong on the network, so a job cannot tell an open port from a closed one.
URLs in messages and logs carry no query string or credentials (:func:`safe_url`).

Tests reach servers on loopback through :data:`ADDRESS_POLICY`, a module attribute a test
replaces with a policy that allows exact ``(address, port)`` pairs; nothing in the
environment can loosen it, so a production worker cannot be switched to "allow loopback".
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import logging
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import certifi
from requests.utils import requote_uri

log = logging.getLogger("worker.fetch")

MAX_REDIRECTS = 3
#: Longest wait for one connect or read, within the overall deadline.
STEP_TIMEOUT_S = 10.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """True for a global unicast address (and IPv6 forms of one); False for everything a
    worker must never be made to reach: loopback, private, link-local (cloud metadata),
    shared (CGNAT), reserved (IPv4-compatible ``::a.b.c.d`` included), site-local,
    unspecified, multicast."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        return is_public(inner)
    if isinstance(address, ipaddress.IPv6Address) and (
        address.is_reserved or address.is_site_local
    ):
        # ::/8 holds the IPv4-compatible ::a.b.c.d, which automatic 6in4 tunnels route to
        # the embedded IPv4 host; Python counts it and deprecated fec0::/10 as global.
        return False
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class AddressPolicy:
    """Which resolved addresses a fetch may connect to: public ones, plus exact test pairs."""

    allowed_for_tests: frozenset[tuple[str, int]] = frozenset()
    """``(address, port)`` pairs a test server listens on; empty in production."""

    def permits(self, address: IPAddress, port: int) -> bool:
        """Whether a connection to ``address:port`` is allowed."""
        return (str(address), port) in self.allowed_for_tests or is_public(address)


PUBLIC_ONLY = AddressPolicy()
#: The policy every fetch uses. Only code can replace it (tests do); no variable can.
ADDRESS_POLICY = PUBLIC_ONLY


class FetchError(Exception):
    """The image could not be fetched; ``reason`` is for the worker log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooLargeError(Exception):
    """The answer was bigger than the limit."""


def safe_url(url: str) -> str:
    """``url`` as logs and errors may show it: no credentials, no query, no fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    host = f"[{host}]" if ":" in host else host
    query = "?<redacted>" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"


def _resolve(host: str, port: int, deadline: float) -> list[IPAddress]:
    """Every address ``host`` resolves to, within the deadline (getaddrinfo has no timeout)."""
    answers: queue.Queue[list[IPAddress] | BaseException] = queue.Queue()

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            answers.put([ipaddress.ip_address(info[4][0]) for info in infos])
        except (OSError, ValueError) as exc:
            answers.put(exc)

    threading.Thread(target=lookup, name="fetch-dns", daemon=True).start()
    try:
        result = answers.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise FetchError(f"resolving {host} outlasted the deadline") from None
    if isinstance(result, BaseException):
        raise FetchError(f"cannot resolve {host}: {result}")
    return result


class _Watchdog:
    """Shuts a socket down at the deadline, ending any blocked connect, handshake or read."""

    def __init__(self, deadline: float) -> None:
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                self._kill()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._kill()

    def _kill(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


def _one_hop(
    url: str, *, allow_http: bool, policy: AddressPolicy, deadline: float
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, _Watchdog]:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not allow_http):
        raise FetchError(f"scheme {parts.scheme!r} is not fetched")
    host = parts.hostname
    if not host:
        raise FetchError("no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port, deadline)
    refused = [str(a) for a in addresses if not policy.permits(a, port)]
    if not addresses or refused:
        raise FetchError(f"{host} resolves to refused address(es) {refused}")
    watchdog = _Watchdog(deadline)
    remaining = deadline - time.monotonic()
    try:
        sock = socket.create_connection(
            (str(addresses[0]), port), timeout=min(STEP_TIMEOUT_S, max(0.01, remaining))
        )
        watchdog.watch(sock)
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=certifi.where())
            sock = context.wrap_socket(sock, server_hostname=host)
            watchdog.watch(sock)
        # The class sets the default port: https on 443 must send "Host: name", not
        # "name:443", which a presigned URL's signature does not cover.
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = kind(host, port, timeout=STEP_TIMEOUT_S)
        connection.sock = sock
        # Spaces and other bytes http.client refuses (quoting the query into its error) are
        # percent-encoded, as requests does.
        target = requote_uri((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        connection.request(
            "GET",
            target,
            headers={"User-Agent": "comfyui-runpod-worker", "Accept": "image/*"},
        )
        response = connection.getresponse()
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        watchdog.cancel()
        raise FetchError(f"{type(exc).__name__}: {exc}") from exc
    return connection, response, watchdog


def fetch(
    url: str,
    *,
    limit: int,
    deadline: float,
    allow_http: bool = False,
    policy: AddressPolicy | None = None,
) -> bytes:
    """The body of ``url`` (at most ``limit`` bytes), fetched before ``deadline`` (monotonic).

    Raises :class:`FetchError` for anything on the way (refused address or scheme, DNS,
    connect, TLS, non-200, too many redirects, deadline) and :class:`TooLargeError` when the
    body exceeds ``limit``.
    """
    policy = policy or ADDRESS_POLICY
    for _hop in range(MAX_REDIRECTS + 1):
        connection, response, watchdog = _one_hop(
            url, allow_http=allow_http, policy=policy, deadline=deadline
        )
        try:
            if response.status in _REDIRECTS and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location") or "")
                continue
            if response.status != 200:
                raise FetchError(f"HTTP {response.status}")
            declared = response.getheader("Content-Length") or ""
            if declared.isdigit() and int(declared) > limit:
                raise TooLargeError(declared)
            body = bytearray()
            while block := response.read1(256 * 1024):
                body.extend(block)
                if len(body) > limit:
                    raise TooLargeError(str(len(body)))
                if time.monotonic() > deadline:
                    raise FetchError("the download outlasted the deadline")
            if watchdog.fired:
                raise FetchError("the download outlasted the deadline")
            return bytes(body)
        except (OSError, http.client.HTTPException) as exc:
            reason = "the download outlasted the deadline" if watchdog.fired else str(exc)
            raise FetchError(f"{type(exc).__name__}: {reason}") from exc
        finally:
            watchdog.cancel()
            connection.close()
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")
