"""Round-trip YAML edits (ruamel.yaml): comments, key order and quoting survive.

Pure text-in, text-out helpers for the sync PR's write-back: change a value in a
kustomize JSON-patch op, add or remove an op, set or delete a field in a
strategic-merge patch file.
"""

from __future__ import annotations

import io
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

from domain.paths import MISSING, Path

_DASH = re.compile(r"^(?P<indent> *)- ")


def is_list_document(text: str) -> bool:
    first = next(
        (ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), ""
    )
    return first.startswith("- ")


def detect_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) as the file already uses them, for a minimal diff.

    Read from a list nested under a key; a document that is itself a list (a
    JSON-patch op list) starts at column 0 whatever its nested lists do, which
    ``dump`` takes care of.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _DASH.match(line)
        if not m or i == 0:
            continue
        prev = next((p for p in reversed(lines[:i]) if p.strip()), "")
        if prev.rstrip().endswith(":"):
            offset = len(m.group("indent")) - (len(prev) - len(prev.lstrip()))
            offset = max(offset, 0)
            return 2, offset + 2, offset
    return (2, 2, 0) if is_list_document(text) else (2, 4, 2)


def _yaml(text: str) -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    mapping, sequence, offset = detect_indent(text)
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    return y


def load(text: str) -> Any:
    return _yaml(text).load(text)


def load_all(text: str) -> list[Any]:
    return list(_yaml(text).load_all(text))


def dump(doc: Any, like: str) -> str:
    buf = io.StringIO()
    _yaml(like).dump(doc, buf)
    out = buf.getvalue()
    _, _, offset = detect_indent(like)
    if offset and isinstance(doc, list) and is_list_document(like):
        # ruamel indents a top-level list by the offset too; the file had it at column 0.
        pad = " " * offset
        lines = out.splitlines(keepends=True)
        if all(not ln.strip() or ln.startswith(pad) for ln in lines):
            out = "".join(ln[offset:] if ln.strip() else ln for ln in lines)
    return out


def dump_all(docs: list[Any], like: str) -> str:
    buf = io.StringIO()
    _yaml(like).dump_all(docs, buf)
    return buf.getvalue()


def pointer(path: Path) -> str:
    """A field path as an RFC 6901 JSON pointer (``/metadata/annotations/a~1b``)."""
    return "".join("/" + str(seg).replace("~", "~0").replace("/", "~1") for seg in path)


def literal(text: str) -> LiteralScalarString:
    """A ``|-`` block, as kustomize's inline patches are written."""
    block: LiteralScalarString = LiteralScalarString(text.rstrip("\n"))
    return block


def plain(value: Any) -> Any:
    """A JSON value as ruamel nodes, so new nested maps dump in block style."""
    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = plain(v)
        return out
    if isinstance(value, list):
        seq = CommentedSeq()
        seq.extend(plain(v) for v in value)
        return seq
    return value


# ---- JSON-patch (RFC 6902) op lists -------------------------------------------------


def set_op_value(ops: Any, ptr: str, value: Any) -> bool:
    """Point the add/replace op on ``ptr`` at ``value`` (or make it a remove)."""
    for op in ops:
        if isinstance(op, dict) and op.get("path") == ptr and op.get("op") in ("add", "replace"):
            if value is MISSING:
                op["op"] = "remove"
                op.pop("value", None)
            else:
                op["value"] = plain(value)
            return True
    return False


def set_inside_op_value(ops: Any, path: Path, value: Any) -> bool:
    """Change ``path`` inside the map value of an op on one of its parents
    (``add /metadata/annotations`` with a map: edit that map)."""
    for depth in range(len(path) - 1, 0, -1):
        parent_ptr = pointer(path[:depth])
        for op in ops:
            if not isinstance(op, dict) or op.get("path") != parent_ptr:
                continue
            if op.get("op") not in ("add", "replace") or not isinstance(op.get("value"), dict):
                continue
            cur = op["value"]
            for seg in path[depth:-1]:
                if not isinstance(cur.get(seg), dict):
                    if value is MISSING:
                        return False
                    cur[seg] = CommentedMap()
                cur = cur[seg]
            if value is MISSING:
                if path[-1] not in cur:
                    return False
                del cur[path[-1]]
            else:
                cur[path[-1]] = plain(value)
            return True
    return False


def drop_op(ops: Any, ptr: str) -> bool:
    """Remove the op on ``ptr`` entirely, so the base's value shows through."""
    for i, op in enumerate(ops):
        if isinstance(op, dict) and op.get("path") == ptr:
            del ops[i]
            return True
    return False


def append_op(ops: Any, ptr: str, value: Any) -> bool:
    op = CommentedMap()
    if value is MISSING:
        op["op"] = "remove"
        op["path"] = ptr
    else:
        op["op"] = "add"
        op["path"] = ptr
        op["value"] = plain(value)
    ops.append(op)
    return True


# ---- strategic-merge patch documents -------------------------------------------------


def has_path(doc: Any, path: Path) -> bool:
    cur = doc
    for seg in path:
        if not isinstance(cur, dict) or seg not in cur:
            return False
        cur = cur[seg]
    return True


def smp_set(doc: Any, path: Path, value: Any) -> None:
    """Set ``path`` in a strategic-merge patch; ``MISSING`` writes ``null`` (delete)."""
    cur = doc
    for seg in path[:-1]:
        if not isinstance(cur.get(seg), dict):
            cur[seg] = CommentedMap()
        cur = cur[seg]
    cur[path[-1]] = None if value is MISSING else plain(value)


def set_inline_patch_value(text: str, ptr: str, value: Any) -> str:
    """A kustomization with the inline JSON-patch op on ``ptr`` set to ``value``."""
    doc = load(text)
    for entry in doc.get("patches") or []:
        if not isinstance(entry, dict) or "patch" not in entry:
            continue
        inner = str(entry["patch"])
        ops = load(inner)
        if isinstance(ops, list) and set_op_value(ops, ptr, value):
            entry["patch"] = literal(dump(ops, inner))
            return dump(doc, text)
    raise ValueError(f"no inline JSON-patch op on {ptr}")
