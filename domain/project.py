"""``tributary.yaml``: the authoring repo's contract (DESIGN.md)."""

from __future__ import annotations

import re
import string
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

from domain.bounds import check_yaml
from domain.errors import BadInput
from domain.markdown import refuse_control
from domain.naming import (
    branch_name_problem,
    duration_range_problem,
    kubernetes_name_problem,
    parse_duration,
)
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

# Allowed ranges: a drift check every second, or a debounce of nothing, is a storm.
DRIFT_INTERVAL_RANGE = ("10s", "30d")
DEBOUNCE_RANGE = ("1s", "1d")


def _in_range(value: str, bounds: tuple[str, str]) -> str:
    problem = duration_range_problem(value, *bounds)
    if problem:
        raise ValueError(problem)
    return value


def _folders(value: list[str]) -> list[str]:
    """Folders inside the repository (the loader checks again, after resolving links)."""
    for entry in value:
        _no_control(entry)
        if entry.startswith("/") or ".." in entry.split("/"):
            raise ValueError(f"{entry!r} must be a path inside the repository")
    return [entry.rstrip("/") for entry in value]


def _no_control(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("contains a control character")
    return value


class SpaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    overlay: str
    environment: str
    approval: ApprovalMode = "none"
    drift: DriftMode = "capture"
    drift_interval: Duration = "5m"
    labels: dict[str, str] = Field(default_factory=dict)
    # kustomize may load remote bases (URLs) for this space; off: its commit only
    allow_remote: bool = False
    # folders of Crossplane Compositions for this space's claims; None: the top-level list
    compositions: list[str] | None = None

    @field_validator("overlay")
    @classmethod
    def _relative(cls, value: str) -> str:
        _no_control(value)
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("must be a path inside the repository")
        return value.rstrip("/")

    @field_validator("compositions")
    @classmethod
    def _composition_folders(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _folders(value)

    @field_validator("drift_interval")
    @classmethod
    def _interval_range(cls, value: str) -> str:
        return _in_range(value, DRIFT_INTERVAL_RANGE)

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
        # Only a bare {space}: str.format would otherwise read attributes
        # ({space.__class__}) or pad to any width ({space:>2000000000}).
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(value)]
        except ValueError as e:
            raise ValueError("may only use the placeholder {space}") from e
        for name, spec, conversion in fields:
            if name is not None and (name != "space" or spec or conversion):
                raise ValueError("may only use the placeholder {space}, without format or fields")
        if not value.strip() or "\n" in value or len(value) > 200:
            raise ValueError("must be one non-empty line of at most 200 characters")
        return _no_control(value)

    @field_validator("base")
    @classmethod
    def _base(cls, value: str) -> str:
        problem = branch_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("debounce")
    @classmethod
    def _debounce_range(cls, value: str) -> str:
        return _in_range(value, DEBOUNCE_RANGE)

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
    # folders of Crossplane Compositions: how claims become managed resources, which
    # drift on the AWS side is mapped back through (a space may name its own)
    compositions: list[str] = Field(default_factory=list)
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
            if name.endswith(".lock") or len(name) > 200:
                # the sync branch is tributary/sync/<space>: git refuses "x.lock"
                raise ValueError(f"space name {name!r} cannot name a git branch")
        return value

    @field_validator("compositions")
    @classmethod
    def _composition_folders(cls, value: list[str]) -> list[str]:
        return _folders(value)

    def compositions_of(self, space: str) -> list[str]:
        """The Composition folders of ``space``: its own, else the top-level ones."""
        own = self.spaces[space].compositions
        return list(self.compositions if own is None else own)

    def all_compositions(self) -> list[str]:
        """Every Composition folder any space uses, each once."""
        seen: dict[str, None] = {}
        for name in self.spaces:
            seen.update(dict.fromkeys(self.compositions_of(name)))
        return list(seen)

    @field_validator("ignore")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                parse_path(entry)
            except BadInput as e:
                raise ValueError(f"{entry!r}: {e.message}") from e
        return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice: the second would silently win
    (``approval: required`` then ``approval: none``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            if isinstance(key, str):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_project(text: str, *, file: str = CONFIG_FILE) -> ProjectConfig:
    """Parse and check ``tributary.yaml``; ``BadInput`` names the line or field."""
    check_yaml(text, file=file)
    try:
        raw: Any = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
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
