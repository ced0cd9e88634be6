"""A provider-aws stand-in: managed resources (Upbound's upjet kinds) reconciled into moto.

Real Crossplane runs one provider per AWS family (``provider-aws-s3``, ``-lambda``, ...);
each reconciles the managed resources of its kinds: it resolves references, creates or
updates the external resource named by ``crossplane.io/external-name`` from
``spec.forProvider``, and reports what AWS holds in ``status.atProvider``. This module
does the same for the kinds the sandbox needs, against moto through boto3:

=========================================  ==============================================
``s3.aws.upbound.io/v1beta1``              Bucket, BucketWebsiteConfiguration,
                                           BucketCorsConfiguration, BucketPublicAccessBlock,
                                           BucketPolicy, Object
``dynamodb.aws.upbound.io/v1beta1``        Table
``iam.aws.upbound.io/v1beta1``             Role
``lambda.aws.upbound.io/v1beta1``          Function, FunctionURL
``cloudwatchevents.aws.upbound.io/v1beta1``  Rule, Target
``sqs.aws.upbound.io/v1beta1``             Queue
=========================================  ==============================================

Any other kind has no provider here: the stand-in marks it Ready without AWS.

References: a ``<field>Selector`` with ``matchControllerRef`` and ``matchLabels`` picks a
managed resource of the same composite by its labels and takes its ``atProvider.arn``
(fields ``role``, ``arn``, ``...Arn``) or ``atProvider.id`` (anything else), as upjet's
reference resolvers do for these fields. An unresolved reference is ``Unresolved`` (try
again after the others). AWS errors (``ClientError``) propagate.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from domain.composition import EXTERNAL_NAME_ANNOTATION
from sandbox.moto_server import AwsClients

log = logging.getLogger(__name__)

_NOT_FOUND = {
    "404",
    "NoSuchBucket",
    "NoSuchEntity",
    "ResourceNotFoundException",
    "NoSuchWebsiteConfiguration",
    "NoSuchCORSConfiguration",
    "NoSuchBucketPolicy",
    "NoSuchPublicAccessBlockConfiguration",
    "NoSuchKey",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
}
COMPOSITE_LABEL = "crossplane.io/composite"


class Unresolved(Exception):
    """A reference whose target is not there (yet)."""


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _absent(call: Callable[[], Any]) -> Any:
    """``call()``, or None when AWS says the thing does not exist."""
    try:
        return call()
    except ClientError as error:
        if error_code(error) in _NOT_FOUND:
            return None
        raise


def external_name(mr: Mapping[str, Any]) -> str:
    meta = mr.get("metadata") or {}
    return str((meta.get("annotations") or {}).get(EXTERNAL_NAME_ANNOTATION) or meta["name"])


def resolve_references(
    for_provider: Mapping[str, Any], siblings: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """``forProvider`` with every ``<field>Selector`` replaced by ``<field>``'s value."""
    out = {k: v for k, v in for_provider.items() if not k.endswith(("Selector", "Ref"))}
    for key, selector in for_provider.items():
        if not key.endswith("Selector") or not isinstance(selector, Mapping):
            continue
        target = key.removesuffix("Selector")
        if target in out:
            continue  # set explicitly: a selector only fills an empty field
        labels = selector.get("matchLabels") or {}
        found = [
            s
            for s in siblings
            if all(((s.get("metadata") or {}).get("labels") or {}).get(k) == v
                   for k, v in labels.items())
        ]  # fmt: skip
        field = "arn" if target in ("role", "arn") or target.endswith("Arn") else "id"
        values = [((s.get("status") or {}).get("atProvider") or {}).get(field) for s in found]
        values = [v for v in values if v]
        if not values:
            raise Unresolved(f"spec.forProvider.{key}: no resolved {labels} to take {field} from")
        out[target] = values[0]
    return out


class Provider:
    """What a provider does with one managed resource of its kind."""

    def __init__(self, aws: AwsClients) -> None:
        self.aws = aws

    def apply(self, name: str, fp: dict[str, Any]) -> None:
        """Create the external resource, or bring it to ``fp`` (resolved forProvider)."""
        raise NotImplementedError

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        """``atProvider`` from AWS; None when the external resource does not exist."""
        raise NotImplementedError

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        raise NotImplementedError


def _region(fp: Mapping[str, Any]) -> str | None:
    return str(fp["region"]) if fp.get("region") else None


# ---- S3 ----------------------------------------------------------------------------------------


class Bucket(Provider):
    def apply(self, name: str, fp: dict[str, Any]) -> None:
        s3, region = self.aws.s3(_region(fp)), _region(fp) or "us-east-1"
        if _absent(lambda: s3.head_bucket(Bucket=name)) is not None:
            return
        if region == "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(
                Bucket=name,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
        log.info("created S3 bucket %s", name)

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        s3 = self.aws.s3(_region(fp))
        if _absent(lambda: s3.head_bucket(Bucket=name)) is None:
            return None
        location = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
        return {
            "id": name,
            "arn": f"arn:aws:s3:::{name}",
            "region": location,
            "bucketDomainName": f"{name}.s3.amazonaws.com",
        }

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        s3 = self.aws.s3(_region(fp))
        if fp.get("forceDestroy"):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=name, Delete={"Objects": keys})  # type: ignore[typeddict-item]
        s3.delete_bucket(Bucket=name)


class _BucketPart(Provider):
    """A bucket sub-resource (website, CORS, policy, public access block): named by its
    bucket."""

    def bucket(self, fp: Mapping[str, Any]) -> str:
        if not fp.get("bucket"):
            raise Unresolved("spec.forProvider.bucket is not set")
        return str(fp["bucket"])


class BucketWebsiteConfiguration(_BucketPart):
    def apply(self, name: str, fp: dict[str, Any]) -> None:
        config: dict[str, Any] = {}
        if fp.get("indexDocument"):
            config["IndexDocument"] = {"Suffix": fp["indexDocument"][0]["suffix"]}
        if fp.get("errorDocument"):
            config["ErrorDocument"] = {"Key": fp["errorDocument"][0]["key"]}
        self.aws.s3(_region(fp)).put_bucket_website(
            Bucket=self.bucket(fp),
            WebsiteConfiguration=config,  # type: ignore[arg-type]
        )

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        bucket = self.bucket(fp)
        got = _absent(lambda: self.aws.s3(_region(fp)).get_bucket_website(Bucket=bucket))
        if got is None:
            return None
        out: dict[str, Any] = {"id": bucket, "bucket": bucket}
        if "IndexDocument" in got:
            out["indexDocument"] = [{"suffix": got["IndexDocument"]["Suffix"]}]
        if "ErrorDocument" in got:
            out["errorDocument"] = [{"key": got["ErrorDocument"]["Key"]}]
        return out

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        self.aws.s3(_region(fp)).delete_bucket_website(Bucket=self.bucket(fp))


_CORS_KEYS = (
    ("allowedMethods", "AllowedMethods"),
    ("allowedOrigins", "AllowedOrigins"),
    ("allowedHeaders", "AllowedHeaders"),
    ("exposeHeaders", "ExposeHeaders"),
    ("maxAgeSeconds", "MaxAgeSeconds"),
)


class BucketCorsConfiguration(_BucketPart):
    def apply(self, name: str, fp: dict[str, Any]) -> None:
        rules = [
            {aws: rule[ours] for ours, aws in _CORS_KEYS if ours in rule}
            for rule in fp.get("corsRule") or []
        ]
        self.aws.s3(_region(fp)).put_bucket_cors(
            Bucket=self.bucket(fp),
            CORSConfiguration={"CORSRules": rules},  # type: ignore[typeddict-item]
        )

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        bucket = self.bucket(fp)
        got = _absent(lambda: self.aws.s3(_region(fp)).get_bucket_cors(Bucket=bucket))
        if got is None:
            return None
        rules = [
            {ours: rule[aws] for ours, aws in _CORS_KEYS if aws in rule}
            for rule in got.get("CORSRules", [])
        ]
        return {"id": bucket, "bucket": bucket, "corsRule": rules}

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        self.aws.s3(_region(fp)).delete_bucket_cors(Bucket=self.bucket(fp))


_BLOCK_KEYS = (
    ("blockPublicAcls", "BlockPublicAcls"),
    ("ignorePublicAcls", "IgnorePublicAcls"),
    ("blockPublicPolicy", "BlockPublicPolicy"),
    ("restrictPublicBuckets", "RestrictPublicBuckets"),
)


class BucketPublicAccessBlock(_BucketPart):
    def apply(self, name: str, fp: dict[str, Any]) -> None:
        config = {aws: bool(fp.get(ours, False)) for ours, aws in _BLOCK_KEYS}
        self.aws.s3(_region(fp)).put_public_access_block(
            Bucket=self.bucket(fp),
            PublicAccessBlockConfiguration=config,  # type: ignore[arg-type]
        )

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        bucket = self.bucket(fp)
        got = _absent(lambda: self.aws.s3(_region(fp)).get_public_access_block(Bucket=bucket))
        if got is None:
            return None
        config = got["PublicAccessBlockConfiguration"]
        return {"id": bucket, "bucket": bucket} | {
            ours: config.get(aws) for ours, aws in _BLOCK_KEYS
        }

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        self.aws.s3(_region(fp)).delete_public_access_block(Bucket=self.bucket(fp))


class BucketPolicy(_BucketPart):
    def apply(self, name: str, fp: dict[str, Any]) -> None:
        self.aws.s3(_region(fp)).put_bucket_policy(Bucket=self.bucket(fp), Policy=fp["policy"])

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        bucket = self.bucket(fp)
        got = _absent(lambda: self.aws.s3(_region(fp)).get_bucket_policy(Bucket=bucket))
        if got is None:
            return None
        return {"id": bucket, "bucket": bucket, "policy": got["Policy"]}

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        self.aws.s3(_region(fp)).delete_bucket_policy(Bucket=self.bucket(fp))


class Object(_BucketPart):
    def apply(self, name: str, fp: dict[str, Any]) -> None:
        if "contentBase64" in fp:
            body = base64.b64decode(str(fp["contentBase64"]))
        else:
            body = str(fp.get("content", "")).encode()
        self.aws.s3(_region(fp)).put_object(
            Bucket=self.bucket(fp),
            Key=str(fp["key"]),
            Body=body,
            ContentType=str(fp.get("contentType") or "binary/octet-stream"),
        )

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        bucket, key = self.bucket(fp), str(fp["key"])
        got = _absent(lambda: self.aws.s3(_region(fp)).head_object(Bucket=bucket, Key=key))
        if got is None:
            return None
        return {
            "id": f"{bucket}/{key}",
            "bucket": bucket,
            "key": key,
            "contentType": got.get("ContentType"),
            "etag": str(got.get("ETag", "")).strip('"'),
        }

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        self.aws.s3(_region(fp)).delete_object(Bucket=self.bucket(fp), Key=str(fp["key"]))


# ---- DynamoDB ----------------------------------------------------------------------------------


class Table(Provider):
    def apply(self, name: str, fp: dict[str, Any]) -> None:
        ddb = self.aws.dynamodb(_region(fp))
        if _absent(lambda: ddb.describe_table(TableName=name)) is not None:
            return  # keys are immutable; billing mode changes are not modelled
        keys = [{"AttributeName": fp["hashKey"], "KeyType": "HASH"}]
        if fp.get("rangeKey"):
            keys.append({"AttributeName": fp["rangeKey"], "KeyType": "RANGE"})
        params: dict[str, Any] = {
            "TableName": name,
            "KeySchema": keys,
            "AttributeDefinitions": [
                {"AttributeName": a["name"], "AttributeType": a["type"]}
                for a in fp.get("attribute") or []
            ],
            "BillingMode": fp.get("billingMode") or "PROVISIONED",
        }
        if params["BillingMode"] == "PROVISIONED":
            params["ProvisionedThroughput"] = {
                "ReadCapacityUnits": int(fp.get("readCapacity") or 1),
                "WriteCapacityUnits": int(fp.get("writeCapacity") or 1),
            }
        ddb.create_table(**params)
        log.info("created DynamoDB table %s", name)

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        ddb = self.aws.dynamodb(_region(fp))
        got = _absent(lambda: ddb.describe_table(TableName=name))
        if got is None:
            return None
        table = got["Table"]
        keys = {k["KeyType"]: k["AttributeName"] for k in table["KeySchema"]}
        out = {
            "id": name,
            "arn": table["TableArn"],
            "billingMode": (table.get("BillingModeSummary") or {}).get("BillingMode")
            or "PROVISIONED",
            "hashKey": keys.get("HASH"),
            "attribute": [
                {"name": a["AttributeName"], "type": a["AttributeType"]}
                for a in table.get("AttributeDefinitions", [])
            ],
            "region": _region(fp) or "us-east-1",
        }
        if "RANGE" in keys:
            out["rangeKey"] = keys["RANGE"]
        return out

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        self.aws.dynamodb(_region(fp)).delete_table(TableName=name)


# ---- IAM ---------------------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class Role(Provider):
    def apply(self, name: str, fp: dict[str, Any]) -> None:
        iam = self.aws.iam()
        boundary = fp.get("permissionsBoundary")
        current = _absent(lambda: iam.get_role(RoleName=name))
        if current is None:
            params: dict[str, Any] = {
                "RoleName": name,
                "AssumeRolePolicyDocument": _json_text(fp["assumeRolePolicy"]),
            }
            if boundary:
                params["PermissionsBoundary"] = boundary
            if fp.get("description"):
                params["Description"] = fp["description"]
            iam.create_role(**params)
            log.info("created IAM role %s", name)
        else:
            iam.update_assume_role_policy(
                RoleName=name, PolicyDocument=_json_text(fp["assumeRolePolicy"])
            )
            if boundary:
                iam.put_role_permissions_boundary(RoleName=name, PermissionsBoundary=boundary)
        wanted = {p["name"]: p["policy"] for p in fp.get("inlinePolicy") or [] if p.get("name")}
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            if policy not in wanted:
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
        for policy, document in wanted.items():
            iam.put_role_policy(
                RoleName=name, PolicyName=policy, PolicyDocument=_json_text(document)
            )

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        iam = self.aws.iam()
        got = _absent(lambda: iam.get_role(RoleName=name))
        if got is None:
            return None
        role = got["Role"]
        inline = [
            {
                "name": policy,
                "policy": _json_text(
                    iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
                ),
            }
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
        ]
        out: dict[str, Any] = {
            "id": name,
            "arn": role["Arn"],
            "uniqueId": role.get("RoleId"),
            "assumeRolePolicy": _json_text(role.get("AssumeRolePolicyDocument") or {}),
            "inlinePolicy": inline,
        }
        if role.get("PermissionsBoundary"):
            out["permissionsBoundary"] = role["PermissionsBoundary"]["PermissionsBoundaryArn"]
        return out

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        iam = self.aws.iam()
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        iam.delete_role(RoleName=name)


# ---- Lambda ------------------------------------------------------------------------------------


def _variables(fp: Mapping[str, Any]) -> dict[str, str]:
    env = fp.get("environment") or []
    return dict((env[0] or {}).get("variables") or {}) if env else {}


class Function(Provider):
    def _wanted(self, fp: Mapping[str, Any]) -> dict[str, Any]:
        if not fp.get("role"):
            raise Unresolved("spec.forProvider.role is not set")
        wanted: dict[str, Any] = {
            "Role": fp["role"],
            "Runtime": fp.get("runtime"),
            "Handler": fp.get("handler"),
            "MemorySize": int(fp.get("memorySize") or 128),
            "Timeout": int(fp.get("timeout") or 3),
            "Environment": {"Variables": _variables(fp)},
        }
        return {k: v for k, v in wanted.items() if v is not None}

    def apply(self, name: str, fp: dict[str, Any]) -> None:
        lam, wanted = self.aws.lambda_(_region(fp)), self._wanted(fp)
        current = _absent(lambda: lam.get_function_configuration(FunctionName=name))
        if current is None:
            lam.create_function(
                FunctionName=name,
                Code={"S3Bucket": str(fp.get("s3Bucket")), "S3Key": str(fp.get("s3Key"))},
                **wanted,
            )
            log.info("created Lambda %s", name)
            return
        have = {key: current.get(key) for key in wanted}
        have["Environment"] = {"Variables": current.get("Environment", {}).get("Variables", {})}
        if have != wanted:  # only write what differs: an unchanged function keeps LastModified
            lam.update_function_configuration(FunctionName=name, **wanted)
            log.info("updated Lambda %s configuration", name)

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        lam = self.aws.lambda_(_region(fp))
        got = _absent(lambda: lam.get_function_configuration(FunctionName=name))
        if got is None:
            return None
        return {
            "id": name,
            "arn": got["FunctionArn"],
            "role": got.get("Role"),
            "runtime": got.get("Runtime"),
            "handler": got.get("Handler"),
            "memorySize": got.get("MemorySize"),
            "timeout": got.get("Timeout"),
            "environment": [{"variables": got.get("Environment", {}).get("Variables", {})}],
            "lastModified": got.get("LastModified"),
            "region": _region(fp) or "us-east-1",
        }

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        self.aws.lambda_(_region(fp)).delete_function(FunctionName=name)


class FunctionURL(Provider):
    def _function(self, fp: Mapping[str, Any]) -> str:
        if not fp.get("functionName"):
            raise Unresolved("spec.forProvider.functionName is not set")
        return str(fp["functionName"])

    def apply(self, name: str, fp: dict[str, Any]) -> None:
        lam, function = self.aws.lambda_(_region(fp)), self._function(fp)
        auth = str(fp.get("authorizationType") or "AWS_IAM")
        current = _absent(lambda: lam.get_function_url_config(FunctionName=function))
        if current is None:
            lam.create_function_url_config(FunctionName=function, AuthType=auth)  # type: ignore[arg-type]
        elif current["AuthType"] != auth:
            lam.update_function_url_config(FunctionName=function, AuthType=auth)  # type: ignore[arg-type]

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        lam, function = self.aws.lambda_(_region(fp)), self._function(fp)
        got = _absent(lambda: lam.get_function_url_config(FunctionName=function))
        if got is None:
            return None
        return {
            "id": function,
            "functionName": function,
            "functionArn": got.get("FunctionArn"),
            "functionUrl": got.get("FunctionUrl"),
            "authorizationType": got.get("AuthType"),
        }

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        lam = self.aws.lambda_(_region(fp))
        _absent(lambda: lam.delete_function_url_config(FunctionName=self._function(fp)))


# ---- EventBridge -------------------------------------------------------------------------------


class Rule(Provider):
    def apply(self, name: str, fp: dict[str, Any]) -> None:
        params: dict[str, Any] = {"Name": name, "State": "ENABLED"}
        if fp.get("eventPattern"):
            params["EventPattern"] = _json_text(fp["eventPattern"])
        if fp.get("description"):
            params["Description"] = fp["description"]
        if fp.get("isEnabled") is False or fp.get("state") == "DISABLED":
            params["State"] = "DISABLED"
        self.aws.events(_region(fp)).put_rule(**params)  # creates or updates

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        got = _absent(lambda: self.aws.events(_region(fp)).describe_rule(Name=name))
        if got is None:
            return None
        out = {
            "id": name,
            "arn": got["Arn"],
            "description": got.get("Description"),
            "state": got.get("State"),
            "region": _region(fp) or "us-east-1",
        }
        if got.get("EventPattern"):
            out["eventPattern"] = got["EventPattern"]
        return out

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        events = self.aws.events(_region(fp))
        targets = events.list_targets_by_rule(Rule=name)["Targets"]
        if targets:
            events.remove_targets(Rule=name, Ids=[t["Id"] for t in targets])
        events.delete_rule(Name=name)


class Target(Provider):
    def _parts(self, fp: Mapping[str, Any]) -> tuple[str, str, str]:
        if not fp.get("rule") or not fp.get("arn"):
            raise Unresolved("spec.forProvider.rule and .arn must be set")
        return str(fp["rule"]), str(fp.get("targetId") or "target"), str(fp["arn"])

    def apply(self, name: str, fp: dict[str, Any]) -> None:
        rule, target, arn = self._parts(fp)
        self.aws.events(_region(fp)).put_targets(Rule=rule, Targets=[{"Id": target, "Arn": arn}])

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        rule, target, _ = self._parts(fp)
        got = _absent(lambda: self.aws.events(_region(fp)).list_targets_by_rule(Rule=rule))
        found = [t for t in (got or {}).get("Targets", []) if t["Id"] == target]
        if not found:
            return None
        return {"id": f"{rule}-{target}", "rule": rule, "targetId": target, "arn": found[0]["Arn"]}

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        rule, target, _ = self._parts(fp)
        events = self.aws.events(_region(fp))
        _absent(lambda: events.remove_targets(Rule=rule, Ids=[target]))


# ---- SQS ---------------------------------------------------------------------------------------

_QUEUE_ATTRIBUTES = (
    ("visibilityTimeoutSeconds", "VisibilityTimeout", int),
    ("messageRetentionSeconds", "MessageRetentionPeriod", int),
    ("delaySeconds", "DelaySeconds", int),
    ("maxMessageSize", "MaximumMessageSize", int),
    ("receiveWaitTimeSeconds", "ReceiveMessageWaitTimeSeconds", int),
    ("redrivePolicy", "RedrivePolicy", str),
)


class Queue(Provider):
    """An SQS queue; a FIFO queue's name gets the ``.fifo`` suffix AWS requires (a
    simplification: Terraform would want it in the name)."""

    def _sqs(self, fp: Mapping[str, Any]) -> Any:
        return self.aws.sqs(_region(fp))

    @staticmethod
    def _name(name: str, fp: Mapping[str, Any]) -> str:
        return f"{name}.fifo" if fp.get("fifoQueue") and not name.endswith(".fifo") else name

    def _url(self, name: str, fp: Mapping[str, Any]) -> str | None:
        queue = self._name(name, fp)
        got = _absent(lambda: self._sqs(fp).get_queue_url(QueueName=queue))
        return None if got is None else str(got["QueueUrl"])

    def apply(self, name: str, fp: dict[str, Any]) -> None:
        attributes = {
            aws: str(fp[ours]) for ours, aws, _ in _QUEUE_ATTRIBUTES if fp.get(ours) is not None
        }
        tags = {str(k): str(v) for k, v in (fp.get("tags") or {}).items()}
        url = self._url(name, fp)
        if url is None:
            if fp.get("fifoQueue"):
                attributes["FifoQueue"] = "true"
            created = self._sqs(fp).create_queue(
                QueueName=self._name(name, fp), Attributes=attributes, tags=tags
            )
            log.info("created SQS queue %s", created["QueueUrl"])
            return
        if attributes:
            self._sqs(fp).set_queue_attributes(QueueUrl=url, Attributes=attributes)
        have = self._sqs(fp).list_queue_tags(QueueUrl=url).get("Tags", {})
        gone = [k for k in have if k not in tags]
        if gone:
            self._sqs(fp).untag_queue(QueueUrl=url, TagKeys=gone)
        if tags and tags != have:
            self._sqs(fp).tag_queue(QueueUrl=url, Tags=tags)

    def observe(self, name: str, fp: dict[str, Any]) -> dict[str, Any] | None:
        url = self._url(name, fp)
        if url is None:
            return None
        got = self._sqs(fp).get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        attributes = got.get("Attributes", {})
        out: dict[str, Any] = {
            "id": url,
            "url": url,
            "name": self._name(name, fp),
            "tags": self._sqs(fp).list_queue_tags(QueueUrl=url).get("Tags", {}),
            "arn": attributes.get("QueueArn"),
            "fifoQueue": attributes.get("FifoQueue") == "true",
            "region": _region(fp) or "us-east-1",
        }
        for ours, aws, kind in _QUEUE_ATTRIBUTES:
            if aws in attributes:
                out[ours] = kind(attributes[aws])
        return out

    def delete(self, name: str, fp: dict[str, Any]) -> None:
        url = self._url(name, fp)
        if url is not None:
            self._sqs(fp).delete_queue(QueueUrl=url)


PROVIDERS: dict[tuple[str, str], type[Provider]] = {
    ("s3.aws.upbound.io", "Bucket"): Bucket,
    ("s3.aws.upbound.io", "BucketWebsiteConfiguration"): BucketWebsiteConfiguration,
    ("s3.aws.upbound.io", "BucketCorsConfiguration"): BucketCorsConfiguration,
    ("s3.aws.upbound.io", "BucketPublicAccessBlock"): BucketPublicAccessBlock,
    ("s3.aws.upbound.io", "BucketPolicy"): BucketPolicy,
    ("s3.aws.upbound.io", "Object"): Object,
    ("dynamodb.aws.upbound.io", "Table"): Table,
    ("iam.aws.upbound.io", "Role"): Role,
    ("lambda.aws.upbound.io", "Function"): Function,
    ("lambda.aws.upbound.io", "FunctionURL"): FunctionURL,
    ("cloudwatchevents.aws.upbound.io", "Rule"): Rule,
    ("cloudwatchevents.aws.upbound.io", "Target"): Target,
    ("sqs.aws.upbound.io", "Queue"): Queue,
}


class ProviderAws:
    """The providers of every kind above, sharing one set of AWS clients."""

    def __init__(self, aws: AwsClients) -> None:
        self.aws = aws
        self._providers: dict[tuple[str, str], Provider] = {
            key: cls(aws) for key, cls in PROVIDERS.items()
        }

    def for_kind(self, api_version: str, kind: str) -> Provider | None:
        return self._providers.get((api_version.split("/")[0], kind))
