"""A real S3 server on loopback (moto's server mode) standing in for Cloudflare R2.

Owns: starting one ThreadedMotoServer per test session and handing each test a fresh bucket
with the ``R2Settings`` a worker would read from its environment; ``python -m tests.fakes.s3``
serves one until interrupted (``scripts/sandbox`` does). A fault-injecting proxy in front of it
lives in ``tests/fakes/s3_proxy.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer
from worker.r2 import R2Settings, make_client

FAKE_ACCESS_KEY = "test-access-key"
FAKE_SECRET_KEY = "test-secret-key"  # a local double's credential, not a real one
_bucket_numbers = itertools.count(1)


@contextmanager
def moto_s3_server(port: int = 0) -> Iterator[str]:
    """Run moto's S3 server on a loopback port (0: any free one); yield its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.stop()


def new_bucket(endpoint: str, *, prefix: str = "") -> R2Settings:
    """Create an empty bucket on ``endpoint`` and return settings that point at it."""
    settings = R2Settings(
        endpoint=endpoint,
        bucket=f"test-bucket-{next(_bucket_numbers)}",
        access_key_id=FAKE_ACCESS_KEY,
        secret_access_key=FAKE_SECRET_KEY,
        prefix=prefix,
    )
    # R2 signs as region "auto"; the S3 server then wants that region as the location.
    make_client(settings).create_bucket(
        Bucket=settings.bucket, CreateBucketConfiguration={"LocationConstraint": "auto"}
    )
    return settings


def settings_env(settings: R2Settings) -> dict[str, str]:
    """The ``R2_*`` environment a worker would be given for ``settings``."""
    env = {
        "R2_ENDPOINT": settings.endpoint,
        "R2_BUCKET": settings.bucket,
        "R2_ACCESS_KEY_ID": settings.access_key_id,
        "R2_SECRET_ACCESS_KEY": settings.secret_access_key,
        "R2_PREFIX": settings.prefix,
    }
    if settings.public_base_url:
        env["R2_PUBLIC_BASE_URL"] = settings.public_base_url
    return env


def list_objects(settings: R2Settings) -> dict[str, dict[str, object]]:
    """Every object in the bucket: key -> {"ETag" (unquoted), "Size"}."""
    client = make_client(settings)
    found: dict[str, dict[str, object]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = {"ETag": item["ETag"].strip('"'), "Size": item["Size"]}
    return found


def main(argv: list[str] | None = None) -> None:
    """Serve S3 on loopback until Ctrl-C or SIGTERM: ``python -m tests.fakes.s3 [--port N]``."""
    import argparse  # noqa: PLC0415 - only the command line needs these
    import logging  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    parser = argparse.ArgumentParser(description="moto's S3 server on 127.0.0.1 (stands in for R2)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with moto_s3_server(args.port) as endpoint:
        print(f"S3 stand-in (moto) at {endpoint}; Ctrl-C stops it", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
