"""``closed_port_url()``: a loopback URL that refuses connections for the whole test."""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit

import pytest

from tests.ops.conftest import closed_port_url


def test_the_closed_port_refuses_and_no_server_can_take_it_meanwhile() -> None:
    """Refused now, and a server of a parallel test cannot bind it later (as with a port that
    was only picked and released): the test keeps talking to nothing, not to someone else."""
    port = urlsplit(closed_port_url()).port
    assert port is not None
    with socket.socket() as client:
        assert client.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers usually do
        with pytest.raises(OSError, match="in use") as caught:
            server.bind(("127.0.0.1", port))
        assert caught.value.errno == errno.EADDRINUSE
