"""Activity failures stay under Temporal's failure size limit and keep their messages."""

from __future__ import annotations

import tempfile
from typing import Any

import yaml
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter

from adapters.kube import KubeClient, KubeUnavailable
from client.failures import CompactFailures, compact

LIMIT = 4 * 1024  # Temporal's default limit for an activity failure


def refused() -> KubeUnavailable:
    """What the apply raises while the API server refuses connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            },
            f,
        )
    kube = KubeClient(f.name)
    try:
        kube.request("GET", "/apis/platform.acme.io/v1beta1/namespaces/o/databaseclaims/x")
    except KubeUnavailable as e:
        return e
    finally:
        kube.close()
    raise AssertionError("the request succeeded")


def size(error: BaseException) -> Failure:
    failure = Failure()
    converter = DataConverter.default
    converter.failure_converter.to_failure(error, converter.payload_converter, failure)
    return failure


def test_a_refused_connection_fits_with_its_message_and_cause() -> None:
    error = refused()
    assert size(error).ByteSize() > LIMIT  # what the Web UI could not show
    compact(error)
    failure = size(error)
    assert failure.ByteSize() < LIMIT / 2
    assert "Connection refused" in failure.message
    assert failure.cause.message  # the cause's message stays


def test_the_worker_registers_it(worker: Any) -> None:  # the fixture uses build_worker
    assert any(isinstance(i, CompactFailures) for i in worker.config()["interceptors"])
