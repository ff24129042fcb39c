"""Real servers on 127.0.0.1 for tests: an MLflow tracking server and an S3 endpoint (moto)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Credentials for the local S3 endpoint (moto accepts any).
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "sffb-test",
    "AWS_SECRET_ACCESS_KEY": "sffb-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def serving(command: list[str], health_url: str, log: Path, env: dict | None = None) -> Iterator:
    """Run ``command`` (its own process group) until ``health_url`` answers; stop it after."""
    with log.open("w") as sink:
        server = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while not healthy(health_url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[:3]} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


@dataclass(frozen=True)
class S3Endpoint:
    url: str  # http://127.0.0.1:PORT

    def env(self) -> dict[str, str]:
        """What a client needs, the standard way (pyarrow, boto3, Ray and MLflow read these)."""
        return {**S3_KEYS, "AWS_ENDPOINT_URL": self.url, "MLFLOW_S3_ENDPOINT_URL": self.url}

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_KEYS["AWS_DEFAULT_REGION"],
        )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@contextlib.contextmanager
def s3_endpoint(log: Path, buckets: tuple[str, ...] = ()) -> Iterator[S3Endpoint]:
    """moto's S3 server on 127.0.0.1, with ``buckets`` created."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    with serving(command, f"{url}/moto-api/", log):
        endpoint = S3Endpoint(url)
        for bucket in buckets:
            endpoint.client().create_bucket(Bucket=bucket)
        yield endpoint


@contextlib.contextmanager
def mlflow_server(
    backend_uri: str, log: Path, artifacts: str = "", env: dict | None = None
) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1, as README tells users to run it; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if artifacts:
        command += ["--artifacts-destination", artifacts]
    url = f"http://127.0.0.1:{port}"
    with serving(command, f"{url}/health", log, env={**os.environ, **(env or {})}):
        yield url
