"""The policy activities' messages: load a commit's bundle (Rego, XRD schemas,
Compositions) and check objects against it. The checking itself: ``activities/policy.py``
(``adapters/rego.py`` runs the Rego)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from domain.authority import PolicyBundle
from domain.publish import RenderedUnit
from domain.repos import SourceRef


class LoadBundleInput(BaseModel):
    source: SourceRef
    policies: list[str]
    schemas: list[str]
    compositions: list[str] = Field(default_factory=list)


class LoadBundleResult(BaseModel):
    bundle: PolicyBundle


class CheckObjectsInput(BaseModel):
    bundle: PolicyBundle
    space: str
    environment: str
    origin: str  # where the objects came from, for error messages (overlay path, "bulk set")
    objects: list[dict[str, Any]]


class CheckObjectsResult(BaseModel):
    units: list[RenderedUnit]
