"""Names: Kubernetes object names, workflow ids, durations."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from domain.errors import BadInput

_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_DURATION_DAYS = 366
MAX_DURATION_SECONDS = MAX_DURATION_DAYS * 86400
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def kubernetes_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid object name (RFC 1123 subdomain), or None."""
    if not isinstance(name, str) or not name:
        return "missing"
    if len(name) > 253:
        return f"{name!r} is longer than 253 characters"
    if not _DNS1123_SUBDOMAIN.fullmatch(name):
        return (
            f"{name!r} is not a valid Kubernetes name: lowercase letters, digits, '-' "
            "and '.', starting and ending with a letter or digit"
        )
    return None


def kubernetes_namespace_problem(namespace: object) -> str | None:
    """Why ``namespace`` is not a valid namespace (RFC 1123 label), or None.

    A namespace becomes a segment of API paths, so nothing but a label passes
    (``team-a/../kube-system`` would address another namespace).
    """
    if not isinstance(namespace, str) or not namespace:
        return "missing"
    if len(namespace) > 63:
        return f"{namespace!r} is longer than 63 characters"
    if not _DNS1123_LABEL.fullmatch(namespace):
        return (
            f"{namespace!r} is not a valid namespace: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def branch_name_problem(value: str) -> str | None:
    """Why ``value`` may not be a sync base branch, or None ("" is the default branch).

    The base reaches git's command line on the worker: a leading ``-`` would be read
    as an option (``--upload-pack=…`` runs a command), ``..`` is a range.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains a control character"
    if value.startswith("-") or ".." in value or " " in value:
        return f"{value!r} is not a branch name"
    return None


def parse_duration(text: str, *, field: str = "duration", file: str | None = None) -> timedelta:
    """``90s``, ``5m``, ``6h``, ``1d``, ``1h30m``."""
    m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m or not any(m.groups()) or len(text) > 32:
        raise BadInput(f"{text!r} is not a duration like 30s, 5m, 6h or 1d", file=file, field=field)
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    total = ((d * 24 + h) * 60 + mi) * 60 + s
    if total > MAX_DURATION_SECONDS:
        # timedelta itself overflows near 10^9 days; nothing here needs a year.
        raise BadInput(f"{text!r} is longer than {MAX_DURATION_DAYS}d", file=file, field=field)
    return timedelta(seconds=total)


def duration_range_problem(text: str, low: str, high: str) -> str | None:
    """Why duration ``text`` is outside ``low``..``high`` (both included), or None."""
    try:
        value = parse_duration(text)
    except BadInput as e:
        return e.message.split(": ", 1)[-1]
    if not parse_duration(low) <= value <= parse_duration(high):
        return f"{text!r} is outside the allowed range {low} to {high}"
    return None


def format_duration(delta: timedelta) -> str:
    total = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts) or "0s"


def short_digest(*parts: str, length: int = 10) -> str:
    h = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return h[:length]


def publish_options(*, force: bool = False, apply: bool = False, message: str = "") -> str:
    """A short digest of what a publish does beyond the default ("" for the default).

    It goes into the publish workflow ids, so that a run attaches only to a run that
    does the same: a CI retry with ``--apply`` must not attach to a run without it.
    """
    if not (force or apply or message):
        return ""
    return "o" + short_digest(f"force={force}", f"apply={apply}", f"message={message}", length=8)


def publish_run_id(commit: str, spaces: list[str], *, dry_run: bool, options: str = "") -> str:
    scope = "all" if not spaces else short_digest(*sorted(spaces))
    suffix = ":dry-run" if dry_run else ""
    return f"publish-run:{commit}:{scope}{suffix}" + (f":{options}" if options else "")


def publish_id(space: str, commit: str, *, dry_run: bool, options: str = "") -> str:
    """``publish:{space}:{commit}``; a publish with other options gets its own id."""
    return (
        f"publish:{space}:{commit}"
        + (":dry-run" if dry_run else "")
        + (f":{options}" if options else "")
    )


def bulk_set_id(request_digest: str) -> str:
    return f"set:{request_digest}"


def rollback_id(space: str, unit: str, to: int) -> str:
    return f"rollback:{space}:{unit}:{to}"


def apply_id(space: str, unit: str) -> str:
    return f"apply:{space}:{unit}"


def drift_id(space: str, unit: str) -> str:
    return f"drift:{space}:{unit}"


def sync_pr_id(space: str) -> str:
    return f"sync-pr:{space}"
