"""What the sandbox Crossplane composes from a ``ServerlessEventAppClaim``: the message wall.

One claim becomes, in the claim's region (names from the claim's fields):

* S3 bucket ``{prefix}-{env}-{account}``: static website, CORS, a public-read bucket policy;
* DynamoDB table of the same name: PK/SK strings, on-demand;
* IAM roles ``{prefix}-api-role`` and ``{prefix}-snapshot-role``, each with the permissions
  boundary ``arn:aws:iam::{account}:policy/MessageWallRoleBoundary``;
* the artifact ``artifacts/api-handler.zip`` in the bucket (unless ``artifactBucket`` is set);
* Lambdas ``{prefix}-api-handler`` and ``{prefix}-snapshot-writer`` (memory and timeout from
  the claim), a function URL for the api-handler;
* EventBridge rule ``{prefix}-message-posted`` (source = eventSource, detail-type
  MessagePosted) targeting the snapshot-writer.

Every step is create-or-update, so composing twice is composing once. AWS errors
(``botocore.exceptions.ClientError``) and unusable specs (``ValueError``) propagate: the
stand-in reports them on the claim's ``Synced`` condition.

Unlike real AWS, moto needs no waiting between steps (roles are usable at once, functions are
Active at once), so there are no waiters here.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from sandbox.moto_server import AwsClients

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

GROUP = "messagewall.demo"
CLAIM_KIND = "ServerlessEventAppClaim"

ARTIFACT_KEY = "artifacts/api-handler.zip"
RUNTIME = "python3.12"
HANDLER = "handler.handler"
DETAIL_TYPE = "MessagePosted"
BOUNDARY_POLICY = "MessageWallRoleBoundary"
PRECIOUS = "confighub.io/precious"
PRECIOUS_RESOURCES = "confighub.io/precious-resources"
DATA_STORES = frozenset({"dynamodb", "s3"})

_ACCOUNT = re.compile(r"^[0-9]{12}$")
_NOT_FOUND = {"404", "NoSuchBucket", "NoSuchEntity", "ResourceNotFoundException"}

log = logging.getLogger(__name__)


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class MessageWallSpec:
    """A claim's spec with the XRD's defaults applied (the peer does not default on write,
    unlike a real apiserver with a structural schema)."""

    aws_account_id: str
    environment: str
    resource_prefix: str = "messagewall"
    region: str = "us-east-1"
    lambda_memory: int = 128
    lambda_timeout: int = 10
    event_source: str = "messagewall.api-handler"
    artifact_bucket: str = ""

    @classmethod
    def from_claim(cls, claim: Mapping[str, Any]) -> MessageWallSpec:
        """Raises ValueError, naming the field, for a spec no apiserver would have admitted."""
        spec = claim.get("spec") or {}
        account, environment = spec.get("awsAccountId"), spec.get("environment")
        if not isinstance(account, str) or not _ACCOUNT.match(account):
            raise ValueError(f"spec.awsAccountId: must be a string of 12 digits, not {account!r}")
        if not isinstance(environment, str) or not environment:
            raise ValueError("spec.environment: Required value")
        defaults = cls(aws_account_id=account, environment=environment)

        def field(name: str, default: Any, kind: type) -> Any:
            value = spec.get(name, default)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"spec.{name}: must be {kind.__name__}, not {value!r}")
            return value

        return cls(
            aws_account_id=account,
            environment=environment,
            resource_prefix=field("resourcePrefix", defaults.resource_prefix, str),
            region=field("region", defaults.region, str),
            lambda_memory=field("lambdaMemory", defaults.lambda_memory, int),
            lambda_timeout=field("lambdaTimeout", defaults.lambda_timeout, int),
            event_source=field("eventSource", defaults.event_source, str),
            artifact_bucket=field("artifactBucket", defaults.artifact_bucket, str),
        )

    # ---- names --------------------------------------------------------------------------------

    @property
    def bucket_name(self) -> str:
        return f"{self.resource_prefix}-{self.environment}-{self.aws_account_id}"

    @property
    def table_name(self) -> str:
        return self.bucket_name

    @property
    def boundary_arn(self) -> str:
        return f"arn:aws:iam::{self.aws_account_id}:policy/{BOUNDARY_POLICY}"

    @property
    def api_role(self) -> str:
        return f"{self.resource_prefix}-api-role"

    @property
    def snapshot_role(self) -> str:
        return f"{self.resource_prefix}-snapshot-role"

    @property
    def api_function(self) -> str:
        return f"{self.resource_prefix}-api-handler"

    @property
    def snapshot_function(self) -> str:
        return f"{self.resource_prefix}-snapshot-writer"

    @property
    def rule_name(self) -> str:
        return f"{self.resource_prefix}-message-posted"

    @property
    def event_pattern(self) -> dict[str, list[str]]:
        return {"source": [self.event_source], "detail-type": [DETAIL_TYPE]}

    @property
    def website_endpoint(self) -> str:
        return f"http://{self.bucket_name}.s3-website-{self.region}.amazonaws.com"


def precious_stores(claim: Mapping[str, Any]) -> frozenset[str]:
    """The data stores (``dynamodb``, ``s3``) a claim's annotations protect from deletion.

    ``precious: "true"`` without a usable list protects both: when in doubt, keep the data.
    """
    annotations = (claim.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(PRECIOUS, "")).strip().lower() != "true":
        return frozenset()
    listed = {r.strip().lower() for r in str(annotations.get(PRECIOUS_RESOURCES, "")).split(",")}
    return frozenset(listed & DATA_STORES) or DATA_STORES


def artifact_zip() -> bytes:
    """A tiny valid deployment package, byte-for-byte the same every time (fixed timestamps),
    so re-uploading it changes nothing."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("handler.py", date_time=(1980, 1, 1, 0, 0, 0))
        archive.writestr(info, "def handler(event, context):\n    return {'statusCode': 200}\n")
    return buffer.getvalue()


class MessageWallComposer:
    """Composes and deletes the message wall of one ``ServerlessEventAppClaim`` at a time."""

    def __init__(self, aws: AwsClients) -> None:
        self.aws = aws

    # ---- compose ------------------------------------------------------------------------------

    def compose(self, claim: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update everything; returns the claim's status fields."""
        spec = MessageWallSpec.from_claim(claim)
        # The bucket first: its name is the one most likely to be rejected (length, charset),
        # and then nothing else has been created.
        self._bucket(spec)
        self._table(spec)
        api_role, snapshot_role = self._roles(spec)
        code_bucket = self._artifact(spec)
        api_arn = self._function(
            spec, spec.api_function, api_role, code_bucket, {"TABLE_NAME": spec.table_name}
        )
        snapshot_arn = self._function(
            spec,
            spec.snapshot_function,
            snapshot_role,
            code_bucket,
            {"TABLE_NAME": spec.table_name, "BUCKET_NAME": spec.bucket_name},
        )
        api_url = self._function_url(spec, spec.api_function)
        self._rule(spec, snapshot_arn)
        log.debug("composed %s and %s", api_arn, snapshot_arn)
        return {
            "websiteEndpoint": spec.website_endpoint,
            "apiEndpoint": api_url,
            "bucketName": spec.bucket_name,
            "tableName": spec.table_name,
            "ready": True,
            "message": "all composed resources are ready",
        }

    def failure_status(self, message: str) -> dict[str, Any]:
        return {"ready": False, "message": message}

    def _bucket(self, spec: MessageWallSpec) -> None:
        s3, name = self.aws.s3(spec.region), spec.bucket_name
        try:
            s3.head_bucket(Bucket=name)
        except ClientError as error:
            if _error_code(error) not in _NOT_FOUND:
                raise
            if spec.region == "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
                s3.create_bucket(Bucket=name)
            else:
                location = cast("BucketLocationConstraintType", spec.region)  # a region is one
                s3.create_bucket(
                    Bucket=name, CreateBucketConfiguration={"LocationConstraint": location}
                )
            log.info("created S3 bucket %s", name)
        s3.put_bucket_website(
            Bucket=name,
            WebsiteConfiguration={
                "IndexDocument": {"Suffix": "index.html"},
                "ErrorDocument": {"Key": "error.html"},
            },
        )
        s3.put_bucket_cors(
            Bucket=name,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedMethods": ["GET", "HEAD"],
                        "AllowedOrigins": ["*"],
                        "MaxAgeSeconds": 3000,
                    }
                ]
            },
        )
        # New buckets block public policies on real AWS: lift that before the public-read policy.
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": False,
                "IgnorePublicAcls": False,
                "BlockPublicPolicy": False,
                "RestrictPublicBuckets": False,
            },
        )
        s3.put_bucket_policy(
            Bucket=name,
            Policy=_policy(
                {
                    "Sid": "PublicReadGetObject",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{name}/*",
                }
            ),
        )

    def _table(self, spec: MessageWallSpec) -> None:
        dynamodb, name = self.aws.dynamodb(spec.region), spec.table_name
        try:
            dynamodb.describe_table(TableName=name)
            return  # keys and billing mode are fixed by this composition: nothing to update
        except dynamodb.exceptions.ResourceNotFoundException:
            pass
        dynamodb.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "SK", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "PK", "AttributeType": "S"},
                {"AttributeName": "SK", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        log.info("created DynamoDB table %s", name)

    def _roles(self, spec: MessageWallSpec) -> tuple[str, str]:
        """Both roles (with the boundary and an inline policy); returns their ARNs."""
        iam = self.aws.iam()
        # The platform team owns the boundary policy. moto would accept any policy ARN as a
        # boundary, but on AWS it must exist; make sure it does (never deleted by us).
        try:
            iam.create_policy(
                PolicyName=BOUNDARY_POLICY,
                PolicyDocument=_policy(
                    {
                        "Effect": "Allow",
                        "Action": ["dynamodb:*", "s3:*", "events:*", "logs:*"],
                        "Resource": "*",
                    }
                ),
            )
        except ClientError as error:
            # Several reconcilers may race to create it; whoever loses finds it there.
            if _error_code(error) != "EntityAlreadyExists":
                raise
        table_arn = f"arn:aws:dynamodb:{spec.region}:{spec.aws_account_id}:table/{spec.table_name}"
        bucket_arn = f"arn:aws:s3:::{spec.bucket_name}"
        logs = {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
        permissions = {
            spec.api_role: _policy(
                logs,
                {
                    "Effect": "Allow",
                    "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"],
                    "Resource": table_arn,
                },
                {"Effect": "Allow", "Action": "events:PutEvents", "Resource": "*"},
            ),
            spec.snapshot_role: _policy(
                logs,
                {"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": table_arn},
                {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{bucket_arn}/*"},
            ),
        }
        trust = _policy(
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        )
        arns: list[str] = []
        for role, policy in permissions.items():
            try:
                arn = iam.get_role(RoleName=role)["Role"]["Arn"]
                iam.put_role_permissions_boundary(
                    RoleName=role, PermissionsBoundary=spec.boundary_arn
                )
            except iam.exceptions.NoSuchEntityException:
                arn = iam.create_role(
                    RoleName=role,
                    AssumeRolePolicyDocument=trust,
                    PermissionsBoundary=spec.boundary_arn,
                )["Role"]["Arn"]
                log.info("created IAM role %s", role)
            iam.put_role_policy(RoleName=role, PolicyName=f"{role}-access", PolicyDocument=policy)
            arns.append(arn)
        return arns[0], arns[1]

    def _artifact(self, spec: MessageWallSpec) -> str:
        """The bucket the Lambda code comes from (uploading the package to our own bucket)."""
        if spec.artifact_bucket:
            return spec.artifact_bucket
        self.aws.s3(spec.region).put_object(
            Bucket=spec.bucket_name, Key=ARTIFACT_KEY, Body=artifact_zip()
        )
        return spec.bucket_name

    def _function(
        self,
        spec: MessageWallSpec,
        name: str,
        role_arn: str,
        code_bucket: str,
        env: dict[str, str],
    ) -> str:
        """Create the function, or bring its configuration back to the claim; returns its ARN."""
        lam = self.aws.lambda_(spec.region)
        wanted: dict[str, Any] = {
            "Role": role_arn,
            "Runtime": RUNTIME,
            "Handler": HANDLER,
            "MemorySize": spec.lambda_memory,
            "Timeout": spec.lambda_timeout,
            "Environment": {"Variables": env},
        }
        try:
            current = lam.get_function_configuration(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            created = lam.create_function(
                FunctionName=name,
                Code={"S3Bucket": code_bucket, "S3Key": ARTIFACT_KEY},
                **wanted,
            )
            log.info("created Lambda %s", name)
            return created["FunctionArn"]
        have = {key: current.get(key) for key in wanted}
        have["Environment"] = {"Variables": current.get("Environment", {}).get("Variables", {})}
        if have != wanted:  # only write what differs: an unchanged function keeps LastModified
            lam.update_function_configuration(FunctionName=name, **wanted)
            log.info("updated Lambda %s configuration", name)
        return current["FunctionArn"]

    def _function_url(self, spec: MessageWallSpec, name: str) -> str:
        lam = self.aws.lambda_(spec.region)
        try:
            return lam.get_function_url_config(FunctionName=name)["FunctionUrl"]
        except lam.exceptions.ResourceNotFoundException:
            pass
        url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
        # AuthType NONE still needs a resource policy letting anyone invoke the URL.
        _add_permission(
            lam,
            FunctionName=name,
            StatementId="FunctionURLAllowPublicAccess",
            Action="lambda:InvokeFunctionUrl",
            Principal="*",
            FunctionUrlAuthType="NONE",
        )
        return url

    def _rule(self, spec: MessageWallSpec, target_arn: str) -> None:
        events = self.aws.events(spec.region)
        rule_arn = events.put_rule(  # put_rule creates or updates
            Name=spec.rule_name,
            EventPattern=json.dumps(spec.event_pattern),
            State="ENABLED",
            Description=f"{DETAIL_TYPE} events from {spec.event_source} to the snapshot-writer",
        )["RuleArn"]
        events.put_targets(
            Rule=spec.rule_name, Targets=[{"Id": "snapshot-writer", "Arn": target_arn}]
        )
        _add_permission(
            self.aws.lambda_(spec.region),
            FunctionName=spec.snapshot_function,
            StatementId=f"{spec.rule_name}-invoke",
            Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com",
            SourceArn=rule_arn,
        )

    # ---- delete -------------------------------------------------------------------------------

    def delete(self, claim: Mapping[str, Any]) -> None:
        """Best-effort teardown; the data stores the claim marks precious are kept (orphaned)."""
        try:
            spec = MessageWallSpec.from_claim(claim)
        except ValueError as error:
            log.warning("not deleting anything for an unusable claim: %s", error)
            return
        keep = precious_stores(claim)
        lam, iam = self.aws.lambda_(spec.region), self.aws.iam()
        api, snapshot = spec.api_function, spec.snapshot_function
        # In dependency order (nothing may still point at what goes next); the data store, if
        # the step deletes one, decides whether the claim's precious marks keep it.
        steps: list[tuple[str, str, Callable[[], object]]] = [
            ("", f"EventBridge rule {spec.rule_name}", partial(self._delete_rule, spec)),
            ("", f"Lambda {api}", partial(_delete_function, lam, api)),
            ("", f"Lambda {snapshot}", partial(_delete_function, lam, snapshot)),
            ("", f"IAM role {spec.api_role}", partial(_delete_role, iam, spec.api_role)),
            ("", f"IAM role {spec.snapshot_role}", partial(_delete_role, iam, spec.snapshot_role)),
            ("s3", f"S3 bucket {spec.bucket_name}", partial(self._delete_bucket, spec)),
            ("dynamodb", f"DynamoDB table {spec.table_name}", partial(self._delete_table, spec)),
        ]  # fmt: skip
        deleted: list[str] = []
        kept: list[str] = []
        for store, label, step in steps:
            if store in keep:
                kept.append(label)
                continue
            try:
                step()
                deleted.append(label)
            except ClientError as error:
                if _error_code(error) not in _NOT_FOUND:  # not found: already gone
                    log.warning("could not delete %s: %s", label, error)
        log.info(
            "claim %s deleted: removed %s; kept (precious) %s",
            (claim.get("metadata") or {}).get("name"),
            ", ".join(deleted) or "nothing",
            ", ".join(kept) or "nothing",
        )

    def _delete_rule(self, spec: MessageWallSpec) -> None:
        events = self.aws.events(spec.region)
        events.remove_targets(Rule=spec.rule_name, Ids=["snapshot-writer"])  # targets go first
        events.delete_rule(Name=spec.rule_name)

    def _delete_table(self, spec: MessageWallSpec) -> None:
        self.aws.dynamodb(spec.region).delete_table(TableName=spec.table_name)

    def _delete_bucket(self, spec: MessageWallSpec) -> None:
        s3 = self.aws.s3(spec.region)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=spec.bucket_name):
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": obj["Key"]} for obj in page.get("Contents", [])
            ]
            if keys:
                s3.delete_objects(Bucket=spec.bucket_name, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=spec.bucket_name)


def _delete_function(lam: LambdaClient, name: str) -> None:
    lam.delete_function(FunctionName=name)  # its URL and resource policy go with it


def _delete_role(iam: IAMClient, role: str) -> None:
    for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        iam.delete_role_policy(RoleName=role, PolicyName=policy)
    iam.delete_role(RoleName=role)


def _add_permission(lam: LambdaClient, **statement: Any) -> None:
    """Add a resource-policy statement unless its Sid is there from an earlier reconcile (real
    Lambda refuses a duplicate Sid; moto would store it twice)."""
    try:
        policy = json.loads(lam.get_policy(FunctionName=statement["FunctionName"])["Policy"])
    except lam.exceptions.ResourceNotFoundException:
        policy = {}
    if any(s.get("Sid") == statement["StatementId"] for s in policy.get("Statement", [])):
        return
    with contextlib.suppress(lam.exceptions.ResourceConflictException):  # added meanwhile
        lam.add_permission(**statement)
