"""AWS observers: read what a Claim's composed resources actually are, as claim fields.

Crossplane turns a Claim into AWS resources; an edit made in AWS directly (the
console during an incident) never shows on the Claim. An observer per claim kind
reads those resources through boto3 and maps their attributes back to the claim
fields they came from, so drift can name ``spec.lambdaMemory`` rather than a
Lambda setting. Kinds without an observer are compared on Kubernetes alone.

boto3 takes credentials and ``AWS_ENDPOINT_URL`` from the worker's environment;
nothing here ever logs or returns them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from domain.drift import DriftField

_NOT_FOUND = {
    "ResourceNotFoundException",
    "NoSuchBucket",
    "404",
    "NotFound",
}
_CONFIG = Config(
    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=20
)


class AwsUnavailable(RuntimeError):
    """AWS could not be reached; the check is retried."""


class Observer(Protocol):
    def observe(self, claim: dict[str, Any]) -> list[DriftField]:
        """Drift between the claim (defaults applied) and its AWS resources."""
        ...


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


class MessageWallObserver:
    """``ServerlessEventAppClaim`` (messagewall.demo): Lambdas, table, bucket, rule."""

    def __init__(self, client: Callable[[str, str], Any]) -> None:
        self._client = client

    def observe(self, claim: dict[str, Any]) -> list[DriftField]:
        spec = claim.get("spec") or {}
        prefix = spec.get("resourcePrefix", "messagewall")
        region = spec.get("region", "us-east-1")
        name = f"{prefix}-{spec.get('environment')}-{spec.get('awsAccountId')}"
        out: list[DriftField] = []
        lam = self._client("lambda", region)
        functions = (f"{prefix}-api-handler", f"{prefix}-snapshot-writer")
        configs = {
            f: self._call(partial(lam.get_function_configuration, FunctionName=f))
            for f in functions
        }
        for field, attribute in (("lambdaMemory", "MemorySize"), ("lambdaTimeout", "Timeout")):
            wanted = spec.get(field)
            moved = [
                (f, c[attribute]) for f, c in configs.items() if c and c.get(attribute) != wanted
            ]
            if moved:  # one claim field, one report, even if both Lambdas moved
                function, actual = moved[0]
                out.append(
                    DriftField(
                        path=f"spec.{field}",
                        authority=wanted,
                        live=actual,
                        manager=f"aws (lambda {function})",
                        source="aws-live",
                    )
                )
        out.extend(
            _missing(f"aws.lambda[{json.dumps(f)}]") for f, c in configs.items() if c is None
        )
        ddb = self._client("dynamodb", region)
        if self._call(partial(ddb.describe_table, TableName=name)) is None:
            out.append(_missing(f"aws.dynamodb[{json.dumps(name)}]"))
        s3 = self._client("s3", region)
        if self._call(partial(s3.head_bucket, Bucket=name)) is None:
            out.append(_missing(f"aws.s3[{json.dumps(name)}]"))
        events = self._client("events", region)
        rule = self._call(partial(events.describe_rule, Name=f"{prefix}-message-posted"))
        if rule is None:
            out.append(_missing(f"aws.events[{json.dumps(prefix + '-message-posted')}]"))
        else:
            sources = json.loads(rule.get("EventPattern") or "{}").get("source") or []
            live_source = sources[0] if sources else None
            if live_source != spec.get("eventSource"):
                out.append(
                    DriftField(
                        path="spec.eventSource",
                        authority=spec.get("eventSource"),
                        live=live_source,
                        manager="aws (eventbridge)",
                        source="aws-live",
                    )
                )
        return out

    @staticmethod
    def _call(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ClientError as e:
            if _code(e) in _NOT_FOUND:
                return None
            raise AwsUnavailable(f"AWS answered {_code(e)}") from e
        except EndpointConnectionError as e:
            raise AwsUnavailable("AWS endpoint unreachable") from e


def _missing(path: str) -> DriftField:
    return DriftField(
        path=path,
        authority="present",
        live="missing",
        manager="aws",
        source="aws-live",
        capturable=False,
    )


class AwsObservers:
    """The observer for a claim kind, with boto3 clients cached per service and region."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], Any] = {}
        self._observers: dict[tuple[str, str], Observer] = {
            ("messagewall.demo", "ServerlessEventAppClaim"): MessageWallObserver(self.client),
        }

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = boto3.session.Session().client(
                service,  # type: ignore[call-overload]
                region_name=region,
                config=_CONFIG,
            )
        return self._clients[key]

    def for_kind(self, api_version: str, kind: str) -> Observer | None:
        return self._observers.get((api_version.split("/")[0], kind))
