"""moto in server mode on loopback, in-process, and boto3 clients pointed at it.

Everything AWS-side in the sandbox goes through real boto3 over HTTP to this server, exactly as
production code reaches AWS, only with ``endpoint_url`` set. Credentials are fixed dummies
(moto accepts anything); the sandbox never reads the environment's AWS credentials, so a
developer's real keys cannot leak into it.

moto's account is ``123456789012`` (its default): ARNs it returns carry that account, whatever
``awsAccountId`` a claim names.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from sandbox._service import Service

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client

DEFAULT_REGION = "us-east-1"
MOTO_ACCOUNT_ID = "123456789012"
# Dummies: moto does not check signatures. Never replace these with real keys.
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"

log = logging.getLogger(__name__)


class _Server(ThreadedMotoServer):
    """ThreadedMotoServer whose ``start()`` fails instead of hanging when the port is taken
    (upstream waits forever on an event the crashed server thread never sets)."""

    startup_error: BaseException | None = None

    def _server_entry(self) -> None:
        try:
            super()._server_entry()
        except BaseException as error:
            self.startup_error = error
            self._server_ready_event.set()


class MotoServer(Service):
    """moto on ``host:port`` (0: any free port) in a daemon thread::

    with MotoServer() as aws:
        s3 = aws.clients().s3()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._server: _Server | None = None

    def start(self) -> str:
        """Start serving; returns the endpoint URL."""
        if self._server is not None:
            raise RuntimeError("the moto server is already started")
        # werkzeug logs every request at INFO to its own stderr handler: keep only problems.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = _Server(ip_address=self._host, port=self._port, verbose=False)
        server.start()
        if server.startup_error is not None:
            # werkzeug reports a taken port with sys.exit(1), hence no better message than this.
            raise OSError(
                f"moto cannot listen on {self._host}:{self._port} (port in use?)"
            ) from server.startup_error
        self._server = server
        self._port = int(server.get_host_and_port()[1])
        log.debug("moto listening on %s", self.endpoint)
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        """Forget every AWS resource (moto's reset API, valid for all services)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the moto server is not started")
        return f"http://{self._host}:{self._port}"

    def clients(self, region: str = DEFAULT_REGION) -> AwsClients:
        return AwsClients(self.endpoint, region)


class AwsClients:
    """boto3 clients for one endpoint, with dummy credentials, cached per (service, region).

    boto3 clients are thread-safe once made, but making them is not (sessions are not
    thread-safe) — hence one lock around creation.
    """

    def __init__(self, endpoint: str, region: str = DEFAULT_REGION) -> None:
        self.endpoint = endpoint
        self.region = region
        self._session = boto3.session.Session(
            aws_access_key_id=DUMMY_ACCESS_KEY_ID,
            aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
            region_name=region,
        )
        # Path-style S3 addressing: bucket names cannot become hostnames of 127.0.0.1. Few
        # retries: the sandbox is local, a failure is not going to go away in a second.
        self._config = Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        )
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _client(self, service: str, region: str | None) -> Any:
        key = (service, region or self.region)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._session.client(
                    service,  # type: ignore[call-overload]  # a str, not one of the stubs' literals
                    region_name=key[1],
                    endpoint_url=self.endpoint,
                    config=self._config,
                )
            return self._cache[key]

    def s3(self, region: str | None = None) -> S3Client:
        return cast("S3Client", self._client("s3", region))

    def dynamodb(self, region: str | None = None) -> DynamoDBClient:
        return cast("DynamoDBClient", self._client("dynamodb", region))

    def iam(self) -> IAMClient:
        return cast("IAMClient", self._client("iam", DEFAULT_REGION))  # IAM is global

    def lambda_(self, region: str | None = None) -> LambdaClient:
        return cast("LambdaClient", self._client("lambda", region))

    def events(self, region: str | None = None) -> EventBridgeClient:
        return cast("EventBridgeClient", self._client("events", region))

    def sqs(self, region: str | None = None) -> Any:
        return self._client("sqs", region)
