"""Label and field selectors of list/watch requests, as pure functions.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a`` (exists)
and ``!a`` (does not exist), comma-separated, all must hold. As on a real apiserver, ``!=``
and ``notin`` also match objects that lack the label.

Field selectors: ``metadata.name`` and ``metadata.namespace`` with ``=``, ``==`` or ``!=`` —
what the apiserver supports for custom resources. Anything else is a 400 there and here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector that cannot be parsed (answered as 400 BadRequest)."""


_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_SET_EXPR = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ_EXPR = re.compile(r"^(?P<key>[^=!\s]+)\s*(?P<op>==|=|!=)\s*(?P<value>\S*)$")


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    op: str  # "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        present = self.key in labels
        value = str(labels.get(self.key, ""))
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op == "in":
            return present and value in self.values
        return not present or value not in self.values  # notin


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``(...)`` value sets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _check_key(key: str, text: str) -> str:
    if not _KEY.match(key):
        raise SelectorError(f"invalid label key {key!r} in selector {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(f"invalid label value {value!r} in selector {text!r}")
    return value


def parse_label_selector(text: str | None) -> list[LabelRequirement]:
    requirements: list[LabelRequirement] = []
    for expr in _split_top_level(text or ""):
        if m := _SET_EXPR.match(expr):
            values = [v.strip() for v in m["values"].split(",") if v.strip()]
            requirements.append(
                LabelRequirement(
                    _check_key(m["key"], text or ""),
                    m["op"],
                    frozenset(_check_value(v, text or "") for v in values),
                )
            )
        elif m := _EQ_EXPR.match(expr):
            op = "notin" if m["op"] == "!=" else "in"
            value = _check_value(m["value"], text or "")
            requirements.append(
                LabelRequirement(_check_key(m["key"], text or ""), op, frozenset({value}))
            )
        elif expr.startswith("!"):
            requirements.append(
                LabelRequirement(_check_key(expr[1:].strip(), text or ""), "!exists")
            )
        else:
            requirements.append(LabelRequirement(_check_key(expr, text or ""), "exists"))
    return requirements


@dataclass(frozen=True)
class FieldRequirement:
    field: str  # "metadata.name" or "metadata.namespace"
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        actual = str(metadata.get(self.field.split(".", 1)[1]) or "")
        return (actual == self.value) == self.equal


_SUPPORTED_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def parse_field_selector(text: str | None) -> list[FieldRequirement]:
    requirements: list[FieldRequirement] = []
    for expr in _split_top_level(text or ""):
        m = _EQ_EXPR.match(expr)
        if m is None:
            raise SelectorError(f"invalid field selector {expr!r}")
        if m["key"] not in _SUPPORTED_FIELDS:
            raise SelectorError(f"field label not supported: {m['key']}")
        requirements.append(FieldRequirement(m["key"], m["op"] != "!=", m["value"]))
    return requirements


@dataclass(frozen=True)
class Selector:
    """Everything a list or watch filters by, besides the resource itself."""

    namespace: str | None = None
    labels: tuple[LabelRequirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(
        cls, namespace: str | None, label_selector: str | None, field_selector: str | None
    ) -> Selector:
        return cls(
            namespace,
            tuple(parse_label_selector(label_selector)),
            tuple(parse_field_selector(field_selector)),
        )

    def matches(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        if self.namespace is not None and metadata.get("namespace") != self.namespace:
            return False
        labels = metadata.get("labels") or {}
        return all(r.matches(labels) for r in self.labels) and all(
            f.matches(obj) for f in self.fields
        )
