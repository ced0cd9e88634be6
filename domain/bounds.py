"""Bounds on everything a commit brings: sizes, YAML aliases, nesting, object counts.

A commit is hostile input (DESIGN.md, trust model). Each bound is far above what a
real overlay needs and far below what hurts the worker; a bound hit is bad input
(``BadInput``, exit 2) naming the file, never an error worth retrying. The YAML
check reads the event stream (PyYAML's parser is a state machine, not recursive),
so a deep or alias-heavy document is refused before anything composes it.
"""

from __future__ import annotations

from typing import Any

import yaml

from domain.errors import BadInput

#: one authored file (YAML, JSON, Rego, an env file)
MAX_FILE_BYTES = 2 * 1024 * 1024
#: nodes of one YAML file once every alias is expanded (a "billion laughs" has 10^9)
MAX_EXPANDED_NODES = 200_000
#: alias uses in one YAML file
MAX_ALIASES = 500
#: nesting of mappings and sequences
MAX_DEPTH = 64
#: objects one overlay renders (units of one space)
MAX_OBJECTS = 2_000
#: bytes of kustomize's output for one overlay
MAX_RENDER_BYTES = 32 * 1024 * 1024
#: files kustomize may read for one overlay
MAX_RENDER_FILES = 5_000

try:  # libyaml's parser when present: the same events, much faster
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


def check_size(data: str | bytes, *, file: str, limit: int = MAX_FILE_BYTES) -> None:
    size = len(data.encode() if isinstance(data, str) else data)
    if size > limit:
        raise BadInput(f"{size} bytes is more than the limit of {limit} bytes", file=file)


def check_text(raw: bytes, *, file: str) -> str:
    """``raw`` as text: bounded, UTF-8, no NUL; else ``BadInput`` naming ``file``."""
    check_size(raw, file=file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"not UTF-8 (byte {e.start})", file=file) from None
    if "\x00" in text:
        raise BadInput("contains a NUL character", file=file)
    return text.removeprefix("\ufeff")


def check_yaml(text: str, *, file: str, max_bytes: int = MAX_FILE_BYTES) -> None:
    """Refuse YAML that is too large, too deep or expands too far through aliases.

    Malformed YAML is left for the caller's own parser, which says where it is
    malformed; this only measures what parses.
    """
    check_size(text, file=file, limit=max_bytes)
    sizes: dict[str, int] = {}  # anchor -> expanded node count
    stack: list[list[Any]] = []  # open collections: [anchor, expanded node count]
    total = aliases = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise BadInput(f"more than {MAX_ALIASES} YAML aliases", file=file)
                count = sizes.get(str(event.anchor), 1)
            elif isinstance(event, yaml.ScalarEvent):
                count = 1
                if event.anchor:
                    sizes[str(event.anchor)] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                stack.append([event.anchor, 1])
                if len(stack) > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else 0
                    raise BadInput(
                        f"nested more than {MAX_DEPTH} levels deep (line {line})", file=file
                    )
                continue
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, count = stack.pop()
                if anchor:
                    sizes[str(anchor)] = count
            else:
                continue
            if stack:
                stack[-1][1] += count
            else:
                total += count
            if total + sum(c for _, c in stack[-1:]) > MAX_EXPANDED_NODES:
                raise BadInput(
                    f"expands to more than {MAX_EXPANDED_NODES} YAML nodes "
                    "(aliases of aliases: a 'billion laughs')",
                    file=file,
                )
    except yaml.YAMLError as e:
        if "nesting depth" in str(e):  # libyaml's own limit (1,000 levels)
            raise BadInput(f"nested more than {MAX_DEPTH} levels deep", file=file) from None
        return  # malformed: the caller's parser reports it, with the line


def check_object_count(count: int, *, file: str) -> None:
    if count > MAX_OBJECTS:
        raise BadInput(
            f"renders {count} objects, more than the limit of {MAX_OBJECTS} units in a space",
            file=file,
        )
