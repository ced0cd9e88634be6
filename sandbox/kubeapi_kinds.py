"""Kinds the API peer serves: registration records, CRD translation, discovery documents, URLs.

Pure functions and plain data only; the handler (``kubeapi_handler``) owns the registry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


@dataclass(frozen=True)
class KindInfo:
    """One served resource: ``group/version``, its kind and plural, and how it behaves."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    singular: str = ""
    list_kind: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = True
    verbs: tuple[str, ...] = DEFAULT_VERBS
    # Set for kinds that a CustomResourceDefinition object registered (its metadata.name).
    crd_name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.singular:
            object.__setattr__(self, "singular", self.kind.lower())
        if not self.list_kind:
            object.__setattr__(self, "list_kind", f"{self.kind}List")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource_name(self) -> str:
        """``widgets.example.org`` (or ``namespaces`` in the core group), as in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key putting the preferred version first: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > x."""
    m = _KUBE_VERSION.match(version)
    if m is None:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m[2]]
    return (stage, -int(m[1]), -int(m[3] or 0), version)


def is_valid_name(name: Any, *, label: bool = False) -> bool:
    """DNS-1123 subdomain (most kinds) or label (namespaces)."""
    if not isinstance(name, str) or not name:
        return False
    if label:
        return len(name) <= 63 and bool(_DNS_LABEL.match(name))
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))


# ---------------------------------------------------------------------------------------------
# CustomResourceDefinition objects


class InvalidCrdError(ValueError):
    """A CRD object we cannot serve (answered as 422 Invalid, naming the field)."""


def kinds_from_crd(crd: Mapping[str, Any]) -> list[KindInfo]:
    """The kinds an ``apiextensions.k8s.io/v1`` CRD serves, one per served version.

    A version's ``subresources`` block is honoured when present; when a version has none, the
    status subresource is on (our default: Claims always have it).
    """
    spec = crd.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidCrdError("spec: Required value")
    group, names, scope = spec.get("group"), spec.get("names"), spec.get("scope")
    if not isinstance(group, str) or not is_valid_name(group) or "." not in group:
        raise InvalidCrdError(f"spec.group: Invalid value: {group!r}: should be a domain")
    if not isinstance(names, Mapping) or not names.get("plural") or not names.get("kind"):
        raise InvalidCrdError("spec.names: Required value: plural and kind are required")
    if scope not in ("Namespaced", "Cluster"):
        raise InvalidCrdError(f"spec.scope: Unsupported value: {scope!r}")
    plural = str(names["plural"])
    expected_name = f"{plural}.{group}"
    if (crd.get("metadata") or {}).get("name") != expected_name:
        raise InvalidCrdError(
            "metadata.name: Invalid value: must be spec.names.plural+'.'+spec.group "
            f"({expected_name})"
        )
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        raise InvalidCrdError("spec.versions: Required value")
    if sum(1 for v in versions if isinstance(v, Mapping) and v.get("storage")) != 1:
        raise InvalidCrdError("spec.versions: Invalid value: exactly one version must be storage")

    kinds: list[KindInfo] = []
    for version in versions:
        if not isinstance(version, Mapping) or not isinstance(version.get("name"), str):
            raise InvalidCrdError("spec.versions[].name: Required value")
        if not version.get("served", True):
            continue
        subresources = version.get("subresources")
        status = "status" in subresources if isinstance(subresources, Mapping) else True
        kinds.append(
            KindInfo(
                group=group,
                version=version["name"],
                kind=str(names["kind"]),
                plural=plural,
                namespaced=scope == "Namespaced",
                singular=str(names.get("singular") or ""),
                list_kind=str(names.get("listKind") or ""),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource=status,
                crd_name=expected_name,
            )
        )
    return kinds


def crd_status(crd: Mapping[str, Any], now: str, old_status: Any = None) -> dict[str, Any]:
    """What the apiextensions controller would write once the names are accepted."""
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    previous = {
        c.get("type"): c
        for c in (old_status or {}).get("conditions", [])
        if isinstance(c, Mapping) and c.get("status") == "True"
    }
    conditions = [
        {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": previous.get(kind, {}).get("lastTransitionTime", now),
        }
        for kind, reason, message in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]
    stored = [
        v["name"] for v in spec.get("versions", []) if isinstance(v, Mapping) and v.get("storage")
    ]
    return {"acceptedNames": names, "conditions": conditions, "storedVersions": stored}


# ---------------------------------------------------------------------------------------------
# Discovery documents (the legacy, non-aggregated format: kubectl and client-go still fall back
# to it when /api and /apis answer with plain JSON)


def api_resource_list(group_version: str, kinds: Iterable[KindInfo]) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for info in sorted(kinds, key=lambda k: k.plural):
        entry: dict[str, Any] = {
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": list(info.verbs),
        }
        if info.short_names:
            entry["shortNames"] = list(info.short_names)
        if info.categories:
            entry["categories"] = list(info.categories)
        resources.append(entry)
        if info.status_subresource:
            resources.append(
                {
                    "name": f"{info.plural}/status",
                    "singularName": "",
                    "namespaced": info.namespaced,
                    "kind": info.kind,
                    "verbs": list(STATUS_VERBS),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def api_group(group: str, versions: Iterable[str]) -> dict[str, Any]:
    ordered = sorted(set(versions), key=version_priority)
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": entries,
        "preferredVersion": entries[0],
    }


def api_group_list(groups: Mapping[str, Iterable[str]]) -> dict[str, Any]:
    documents = [api_group(group, versions) for group, versions in sorted(groups.items())]
    for doc in documents:
        del doc["kind"], doc["apiVersion"]  # inside a list, groups carry no type of their own
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": documents}


# ---------------------------------------------------------------------------------------------
# Resource URLs

# Subresources of a namespace itself, so /api/v1/namespaces/x/status is not a list of "status".
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class Route:
    """A resource URL: /apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_route(path: str) -> Route | None:
    """The resource a URL addresses, or None for non-resource URLs (discovery, /version)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    return Route(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource=rest[2] if len(rest) > 2 else None,
    )
