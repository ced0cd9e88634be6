"""The Kubernetes activities' messages (``activities/kube.py``): server-side apply,
wait for Ready, delete — the cluster side of an apply."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.apply import ApplyGates


class ObjectRef(BaseModel):
    api_version: str
    kind: str
    name: str
    namespace: str | None = None


class KubeApplyInput(BaseModel):
    data: dict[str, Any]
    xrds: list[dict[str, Any]] = Field(default_factory=list)
    compositions: list[dict[str, Any]] = Field(default_factory=list)
    space: str = ""
    unit: str = ""
    # None (tests, tools): no kind/namespace check; the owner label is always kept
    gates: ApplyGates | None = None


class KubeApplyResult(BaseModel):
    ref: ObjectRef
    generation: int
    resource_version: str = ""


class KubeWaitInput(BaseModel):
    ref: ObjectRef
    generation: int
    timeout_seconds: int
    # The transient Synced=False the workflow already reported: the wait returns
    # "waiting" only for a different one, so the apply status follows it.
    seen: str = ""


class KubeWaitResult(BaseModel):
    # waiting: a transient Synced=False (message: the condition), not a verdict
    state: Literal["ready", "failed", "pending", "waiting"]
    message: str = ""


class KubeDeleteInput(BaseModel):
    ref: ObjectRef
    timeout_seconds: int = 300
    space: str = ""  # set: refuse to delete an object another space owns


class KubeDeleteResult(BaseModel):
    existed: bool
