"""``tributary.yaml``: the authoring repo's contract (DESIGN.md)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from domain.errors import BadInput
from domain.markdown import refuse_control
from domain.naming import kubernetes_name_problem, parse_duration
from domain.paths import parse_path

CONFIG_FILE = "tributary.yaml"

ApprovalMode = Literal["none", "acknowledge", "required"]
DriftMode = Literal["capture", "revert", "report"]


def _duration(value: str) -> str:
    """A pydantic check that ``value`` reads as a duration (``5m``, ``30s``)."""
    try:
        parse_duration(value)
    except BadInput as e:
        raise ValueError(e.message.removeprefix("duration: ")) from e
    return value


Duration = Annotated[str, AfterValidator(_duration)]


class SpaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    overlay: str
    environment: str
    approval: ApprovalMode = "none"
    drift: DriftMode = "capture"
    drift_interval: Duration = "5m"
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("overlay")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("must be a path inside the repository")
        return value.rstrip("/")

    @property
    def drift_interval_seconds(self) -> int:
        return int(parse_duration(self.drift_interval).total_seconds())


class SyncConfig(BaseModel):
    """How the sync PR arrow writes back: ``sync:`` in tributary.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    debounce: Duration = "30s"  # a burst of changes within this window becomes one PR update
    author: str = "Tributary <tributary@users.noreply.local>"
    base: str = ""  # the branch PRs target; empty: the repo's default branch
    # first line of the commit and the PR title; {space} is replaced
    message: str = "Sync {space} from the authority"

    @field_validator("message")
    @classmethod
    def _message(cls, value: str) -> str:
        try:
            value.format(space="x")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError("may only use the placeholder {space}") from e
        if not value.strip() or "\n" in value:
            raise ValueError("must be one non-empty line")
        return value

    @field_validator("author")
    @classmethod
    def _author(cls, value: str) -> str:
        # A newline here would add trailers (Co-authored-by: …) to every sync commit.
        refuse_control(value)
        if not re.fullmatch(r"[^<>]+ <[^<>@\s]+@[^<>\s]+>", value):
            raise ValueError("must look like 'Name <email>'")
        return value

    @property
    def debounce_seconds(self) -> int:
        return int(parse_duration(self.debounce).total_seconds())


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    spaces: dict[str, SpaceConfig]
    sync: SyncConfig = Field(default_factory=SyncConfig)
    policies: list[str] = Field(default_factory=list)
    schemas: list[str] = Field(default_factory=list)
    ignore: list[str] = Field(default_factory=list)

    @field_validator("spaces")
    @classmethod
    def _space_names(cls, value: dict[str, SpaceConfig]) -> dict[str, SpaceConfig]:
        if not value:
            raise ValueError("at least one space is required")
        for name in value:
            problem = kubernetes_name_problem(name)
            if problem:
                raise ValueError(f"space name {problem}")
        return value

    @field_validator("ignore")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                parse_path(entry)
            except BadInput as e:
                raise ValueError(f"{entry!r}: {e.message}") from e
        return value


def parse_project(text: str, *, file: str = CONFIG_FILE) -> ProjectConfig:
    """Parse and check ``tributary.yaml``; ``BadInput`` names the line or field."""
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        problem = getattr(e, "problem", None) or str(e)
        raise BadInput(f"malformed YAML: {problem}", file=where) from e
    if not isinstance(raw, dict):
        raise BadInput("expected a mapping with a 'spaces' key", file=file)
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        extra = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise BadInput(message + extra, file=file, field=field) from e
