"""Fixtures shared by every test directory: the local S3 server and a fresh bucket per test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from worker.r2 import R2Settings

from tests.fakes.s3 import moto_s3_server, new_bucket

pytest_plugins = ("tests.suite_guard",)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on loopback, shared by the whole session."""
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def r2_bucket(s3_endpoint: str) -> R2Settings:
    """A new, empty bucket on the local S3 server, as R2 settings a worker would read."""
    return new_bucket(s3_endpoint, prefix="test/")


@pytest.fixture(autouse=True)
def _fresh_main_thread_loop() -> Iterator[None]:
    """Give every test a current event loop on the main thread, and close it afterwards.

    Pulumi's mocks make and await Outputs on the thread's current loop; a test that ran
    ``asyncio.run`` (the runpod SDK's job runner, aiohttp servers) leaves the main thread with
    none, which would break whichever Pulumi test happens to run next.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        if not loop.is_running():
            loop.close()
