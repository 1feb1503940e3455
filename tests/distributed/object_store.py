"""A real S3 endpoint on loopback for the tests: moto's server in a thread, with fake credentials.

Clients find it the way a deployment would point them at MinIO or any S3-compatible store: through the
standard environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), which s3fs/botocore read and which
Ray workers started afterwards inherit. Spark's Python workers get it from ``spark.executorEnv.*``
(:meth:`S3Server.spark_conf`), as a cluster's executors would.
"""
from __future__ import annotations

import logging
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str] = field(default_factory=dict)

    def bucket(self) -> str:
        """A new, empty bucket; returns its ``s3://`` URL."""
        import fsspec

        name = f"pinlanding-{uuid.uuid4().hex[:10]}"
        fsspec.filesystem("s3").mkdir(name)
        return f"s3://{name}"

    def spark_conf(self) -> dict[str, str]:
        """The endpoint and credentials for Spark's Python workers."""
        return {f"spark.executorEnv.{k}": v for k, v in self.env.items()}


def stop_active_spark() -> None:
    """Stop this process's Spark session, if any: ``getOrCreate`` would keep it, and with it the executor
    environment it was started with (without the S3 endpoint and credentials)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start moto's S3 server on a free loopback port, export its endpoint and fake credentials; undo both."""
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "pinlanding-test",
           "AWS_SECRET_ACCESS_KEY": "pinlanding-test", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()  # instances made before carry no endpoint
    try:
        yield S3Server(env["AWS_ENDPOINT_URL"], env)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
