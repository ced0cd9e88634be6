"""The authority on ConfigHub: units and revisions in ConfigHub, the rest beside the worker.

``ConfigHubStore`` implements ``AuthorityStore`` by composing two parts:

- **ConfigHub** (``confighub_api.ConfigHubApi``) holds what it has objects for: spaces
  (created by a publish, as ``cub space create``), units (``Data`` is the Claim YAML,
  ``Labels``, ``LastChangeDescription``), their revisions (number, data, description,
  creation time), and, in the unit's ``Annotations`` under ``tributary.dev/``, our
  optimistic-concurrency version, the idempotency key of the last write and the facts
  of the last capture (``capture-time``, ``source``, ``tag``, ``incident``).
- **The state store** (the embedded ``SqlStore`` on SQLite or PostgreSQL,
  ``TRIBUTARY_STATE``) holds what ConfigHub has no object for: the space settings and
  gates (policy bundle, drift mode, allowed kinds and namespaces, approval mode), the
  per-revision source/tags/author/policy/approvals (ConfigHub revision ``Tags`` are
  set only through Tag entities), unit lifecycle state and the revision Git wrote
  last, live and applied revisions of the ``kubernetes`` actuator (mirrored to the
  unit's annotations; ConfigHub moves ``LiveRevisionNum`` only through its own
  applies), Git's merge bases and published commits, drift records, sweep state,
  drift pauses and sync pull requests (tables ``confighub_*`` and the usual ones).

A multi-unit ``commit`` checks every unit's version (and Git's bases) before it writes
anything, so a stale plan writes nothing; ConfigHub has no transaction across units,
so a writer racing between that check and the writes can leave the first units
written. Each unit write is a compare-and-set on ConfigHub's ``Version`` (409 → read
again). A retried write finds its own earlier write by the idempotency key annotation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, case, delete, insert, literal, or_, select, update

from authority import tables as t
from authority.confighub_api import (
    ConfigHubApi,
    ConfigHubConflict,
    decode_data,
    encode_data,
    quote,
)
from authority.sql import SqlStore, _record_git
from domain.authority import (
    GIT_SOURCES,
    Approval,
    ChangeOutcome,
    GatesUpdate,
    PolicyResult,
    RevisionRecord,
    Source,
    SpaceRecord,
    SpaceSpec,
    UnitChange,
    UnitRecord,
    UnitStateChange,
)
from domain.diff import json_equal
from domain.drift import (
    CaptureResult,
    DriftRecord,
    PendingHead,
    capture_conflict,
    capture_over_pending,
    conflict_paths,
)
from domain.errors import CaptureConflict, NotFound, StaleVersion
from domain.publish import GitBase, GitRecord
from domain.sync import PullRequest

PREFIX = "tributary.dev/"
A_VERSION = PREFIX + "version"
A_KEY = PREFIX + "idempotency-key"
A_KEY_REVISION = PREFIX + "idempotency-revision"
A_CAPTURE_KEY = PREFIX + "capture-key"
A_CAPTURE_REVISION = PREFIX + "capture-revision"
A_CAPTURE_REBASED = PREFIX + "capture-rebased-revision"
A_CAPTURE_PENDING = PREFIX + "capture-pending-revision"
A_LIVE = PREFIX + "live-revision"
A_APPLIED = PREFIX + "last-applied-revision"
TOOLCHAIN = "Kubernetes/YAML"
DEFAULT_STATE_URL = "sqlite:///.tributary/state.db"
PUT_ATTEMPTS = 5


def state_url() -> str:
    return os.environ.get("TRIBUTARY_STATE", DEFAULT_STATE_URL)


def _now() -> datetime:
    return datetime.now(UTC)


def parse_time(value: Any) -> datetime:
    """An RFC 3339 time from Go (nanoseconds, ``Z``); absent (omitempty) → now."""
    if not value:
        return _now()
    text = str(value).replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    parsed = datetime.fromisoformat(text)
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _num(value: Any) -> int | None:
    """A revision number, where 0 or absent (omitempty) means none."""
    return int(value) if value else None


def _source_of(description: str) -> Source:
    """A revision written outside Tributary: the seed's description conventions."""
    if description.startswith("CI: "):
        return "ci"
    if description.startswith("drift-capture"):
        return "drift-capture"
    return "operator"


class ConfigHubStore:
    """``AuthorityStore`` on ConfigHub's REST API plus a state store beside the worker."""

    def __init__(self, api: ConfigHubApi, state: SqlStore) -> None:
        self.api = api
        self.state = state
        self._space_ids: dict[str, str] = {}

    @classmethod
    def open(
        cls, url: str, state: str | None = None, *, field: str = "TRIBUTARY_AUTHORITY"
    ) -> ConfigHubStore:
        """``field``: the variable ``url`` came from (``CONFIGHUB_URL`` or
        ``TRIBUTARY_AUTHORITY``), for errors."""
        api = ConfigHubApi(url, field=field)
        try:
            return cls(api, SqlStore(state or state_url(), field="TRIBUTARY_STATE"))
        except BaseException:
            api.close()
            raise

    def __repr__(self) -> str:
        return f"ConfigHubStore({self.api!r})"

    def close(self) -> None:
        self.api.close()
        self.state.close()

    # ---- ConfigHub lookups ----------------------------------------------------------

    def _space_id(self, space: str, *, create: dict[str, str] | None = None) -> str | None:
        found = self._space_ids.get(space)
        if found:
            return found
        record = self.api.find_space(space)
        if record is None and create is not None:
            try:
                record = self.api.create_space(space, create)
            except ConfigHubConflict:  # created meanwhile (as `cub space create` would)
                record = self.api.find_space(space)
        if record is None or not record.get("SpaceID"):
            return None
        self._space_ids[space] = str(record["SpaceID"])
        return self._space_ids[space]

    def _find_unit(self, space: str, slug: str) -> tuple[str, dict[str, Any]] | None:
        """(space id, the bare Unit) of ``space/slug``, or None."""
        space_id = self._space_id(space)
        if space_id is None:
            return None
        found = self.api.list_units(
            space_id, f"reading unit {space}/{slug}", where=f"Slug = {quote(slug)}"
        )
        for item in found:
            unit = item["Unit"]
            if unit.get("Slug") == slug:
                return space_id, dict(unit)
        return None

    def extended_unit(self, space: str, slug: str) -> tuple[str, dict[str, Any]] | None:
        """(space id, the ``ExtendedUnit``: Unit, UnitStatus, LatestUnitEvent), or None:
        what the ``confighub`` actuator reads around an apply."""
        space_id = self._space_id(space)
        if space_id is None:
            return None
        found = self.api.list_units(
            space_id, f"reading unit {space}/{slug}", where=f"Slug = {quote(slug)}"
        )
        for item in found:
            if item["Unit"].get("Slug") == slug:
                return space_id, item
        return None

    def _units_by_slug(self, space: str) -> dict[str, dict[str, Any]]:
        """Every unit of ``space`` (bare Units) by slug: one call for a whole publish."""
        space_id = self._space_id(space)
        if space_id is None:
            return {}
        listed = self.api.list_units(space_id, f"listing units of {space}")
        return {str(item["Unit"].get("Slug")): dict(item["Unit"]) for item in listed}

    def _revisions(
        self, space: str, slug: str, space_id: str, unit_id: str, number: int | None = None
    ) -> list[dict[str, Any]]:
        what = f"reading revisions of unit {space}/{slug}"
        return self.api.list_revisions(space_id, unit_id, what, number)

    # ---- state-store side ----------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with (
            self.state.engine.connect().execution_options(tributary_write=True) as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.state.engine.connect() as conn, conn.begin():
            yield conn

    def _side_units(self, space: str) -> dict[str, Any]:
        with self._read() as conn:
            rows = conn.execute(
                select(t.confighub_units).where(t.confighub_units.c.space == space)
            ).mappings()
            return {r["unit"]: dict(r) for r in rows}

    def _side_revisions(self, space: str, slug: str) -> dict[int, Any]:
        c = t.confighub_revisions.c
        with self._read() as conn:
            rows = conn.execute(
                select(t.confighub_revisions).where(c.space == space, c.unit == slug)
            ).mappings()
            return {int(r["number"]): dict(r) for r in rows}

    def _side_revisions_of_space(self, space: str) -> dict[str, dict[int, Any]]:
        c = t.confighub_revisions.c
        out: dict[str, dict[int, Any]] = {}
        with self._read() as conn:
            for r in conn.execute(select(t.confighub_revisions).where(c.space == space)).mappings():
                out.setdefault(str(r["unit"]), {})[int(r["number"])] = dict(r)
        return out

    # ---- conversions ---------------------------------------------------------------

    def _unit(self, space: str, unit: dict[str, Any], side: dict[str, Any] | None) -> UnitRecord:
        data = decode_data(unit.get("Data"))
        notes = unit.get("Annotations") or {}
        head = int(unit.get("HeadRevisionNum") or 0)
        side = side or {}

        def most(*values: Any) -> int | None:
            found = [int(v) for v in values if v]
            return max(found) if found else None

        return UnitRecord(
            space=space,
            slug=str(unit.get("Slug", "")),
            api_version=str(data.get("apiVersion", "")),
            kind=str(data.get("kind", "")),
            labels=dict(unit.get("Labels") or {}),
            head_revision=head,
            live_revision=most(side.get("live_revision"), unit.get("LiveRevisionNum")),
            last_applied_revision=most(
                side.get("last_applied_revision"), unit.get("LastAppliedRevisionNum")
            ),
            git_revision=side.get("git_revision"),
            version=int(notes.get(A_VERSION) or head),
            last_change_description=str(unit.get("LastChangeDescription") or ""),
            state=side.get("state") or "active",
            created_at=parse_time(unit.get("CreatedAt")),
            updated_at=parse_time(unit.get("UpdatedAt")),
        )

    def _revision(
        self, space: str, slug: str, rev: dict[str, Any], side: dict[str, Any] | None
    ) -> RevisionRecord:
        description = str(rev.get("Description") or "")
        if side is None:
            side = {
                "source": _source_of(description),
                "tags": {},
                "author": str(rev.get("UserID") or ""),
                "policy": {},
                "approvals": [],
            }
        return RevisionRecord(
            space=space,
            unit=slug,
            number=int(rev.get("RevisionNum") or 0),
            data=decode_data(rev.get("Data")),
            description=description,
            source=side["source"],
            tags=side["tags"] or {},
            author=side["author"] or "",
            policy=PolicyResult.model_validate(side["policy"] or {}),
            approvals=[Approval.model_validate(a) for a in side["approvals"] or []],
            created_at=parse_time(rev.get("CreatedAt")),
        )

    # ---- reads -------------------------------------------------------------------------

    def get_space(self, name: str) -> SpaceRecord | None:
        return self.state.get_space(name)

    def list_spaces(self) -> list[SpaceRecord]:
        return self.state.list_spaces()

    def list_units(self, space: str) -> list[UnitRecord]:
        space_id = self._space_id(space)
        if space_id is None:
            return []
        side = self._side_units(space)
        units = [
            item["Unit"] for item in self.api.list_units(space_id, f"listing units of {space}")
        ]
        out = [self._unit(space, u, side.get(str(u.get("Slug")))) for u in units]
        return sorted(out, key=lambda u: u.slug)

    def get_unit(self, space: str, slug: str) -> UnitRecord | None:
        found = self._find_unit(space, slug)
        if found is None:
            return None
        return self._unit(space, found[1], self._side_units(space).get(slug))

    def list_revisions(self, space: str, slug: str) -> list[RevisionRecord]:
        found = self._find_unit(space, slug)
        if found is None:
            return []
        space_id, unit = found
        side = self._side_revisions(space, slug)
        revs = self._revisions(space, slug, space_id, str(unit["UnitID"]))
        out = [
            self._revision(space, slug, r, side.get(int(r.get("RevisionNum") or 0))) for r in revs
        ]
        return sorted(out, key=lambda r: r.number)

    def get_revision(self, space: str, slug: str, number: int) -> RevisionRecord | None:
        found = self.get_revisions(space, [(slug, number)])
        return found[0] if found else None

    def get_revisions(self, space: str, keys: list[tuple[str, int]]) -> list[RevisionRecord]:
        if not keys or self._space_id(space) is None:
            return []
        wanted: dict[str, set[int]] = {}
        for slug, number in keys:
            wanted.setdefault(slug, set()).add(number)
        units = self._units_by_slug(space)
        sides = self._side_revisions_of_space(space)
        out: list[RevisionRecord] = []
        for slug, numbers in wanted.items():
            unit = units.get(slug)
            if unit is None:
                continue
            side = sides.get(slug, {})
            space_id, unit_id = str(unit["SpaceID"]), str(unit["UnitID"])
            if len(numbers) == 1:
                revs = self._revisions(space, slug, space_id, unit_id, next(iter(numbers)))
            else:
                revs = self._revisions(space, slug, space_id, unit_id)
            for rev in revs:
                number = int(rev.get("RevisionNum") or 0)
                if number in numbers:
                    out.append(self._revision(space, slug, rev, side.get(number)))
        return out

    def git_bases(self, space: str) -> dict[str, GitBase]:
        c = t.confighub_git_bases.c
        with self._read() as conn:
            rows = conn.execute(select(t.confighub_git_bases).where(c.space == space)).mappings()
            return {
                r["unit"]: GitBase(slug=r["unit"], commit=r["commit"], data=r["data"]) for r in rows
            }

    def is_published(self, space: str, commit: str) -> bool:
        return self.state.is_published(space, commit)

    def list_unit_keys(self, after: tuple[str, str] | None, limit: int) -> list[tuple[str, str]]:
        keys: list[tuple[str, str]] = []
        for space in sorted(s.name for s in self.state.list_spaces()):
            if after is not None and space < after[0]:
                continue
            for unit in self.list_units(space):
                key = (space, unit.slug)
                if unit.state == "active" and (after is None or key > after):
                    keys.append(key)
            if len(keys) >= limit:
                break
        return keys[:limit]

    # ---- writes ------------------------------------------------------------------------

    def commit(
        self,
        changes: list[UnitChange],
        *,
        spaces: list[SpaceSpec] | None = None,
        states: list[UnitStateChange] | None = None,
        git: GitRecord | None = None,
    ) -> list[ChangeOutcome]:
        specs = {s.name: s for s in spaces or []}
        # 1. Plan every change and check every version before writing anything.
        plans: list[tuple[UnitChange, dict[str, Any] | None, ChangeOutcome | None]] = []
        known: dict[str, dict[str, dict[str, Any]]] = {}  # space -> slug -> unit
        sides: dict[str, dict[str, Any]] = {}  # space -> slug -> state-store row
        for change in changes:
            if change.space not in known:
                if change.space not in specs and self.state.get_space(change.space) is None:
                    raise NotFound(f"space {change.space!r} does not exist")
                known[change.space] = self._units_by_slug(change.space)
                sides[change.space] = self._side_units(change.space)
            unit = known[change.space].get(change.slug)
            plans.append((change, unit, self._decide(change, unit)))
        doomed: list[tuple[UnitStateChange, dict[str, Any]]] = []  # deletes, with the unit
        for state in states or []:
            found = self._find_unit(state.space, state.slug)
            if found is not None and state.state == "deleted":
                doomed.append((state, found[1]))
            elif found is None and not self._deleted(state):
                raise NotFound(f"unit {state.space}/{state.slug} does not exist")
        if git is not None:
            stored = self.git_bases(git.space)
            for base in git.bases:
                had = stored.get(base.slug)
                if had is not None and had.commit == base.commit:
                    continue
                if (had.commit if had else "") != git.expected.get(base.slug, ""):
                    raise StaleVersion(
                        f"unit {git.space}/{base.slug}: Git's base moved to commit "
                        f"{had.commit if had else None} while this publish was planning"
                    )
        # 2. Write: spaces (ConfigHub and their settings), units, states, Git's side.
        for spec in specs.values():
            self._space_id(spec.name, create=spec.labels)
        if specs:
            self.state.commit([], spaces=list(specs.values()))
        outcomes: list[ChangeOutcome] = []
        written: list[tuple[UnitChange, int]] = []
        for change, unit, decided in plans:
            if decided is not None:
                side = sides.get(change.space, {}).get(change.slug)
                if unit is not None and side is not None and side["state"] != "active":
                    self._set_state(change.space, change.slug, "active")
                outcomes.append(decided)
            else:
                outcome = self._write_change(change, unit)
                written.append((change, outcome.revision))
                outcomes.append(outcome)
        # 3. What ConfigHub has no object for, in one transaction of the state store.
        with self._write() as conn:
            for change, number in written:
                self._record_revision(change, number, change.tags, conn=conn)
                values: dict[str, Any] = {"state": "active"}
                if change.source in GIT_SOURCES:
                    values["git_revision"] = number
                _upsert_side_unit(conn, change.space, change.slug, values)
            for state in states or []:
                _set_state(conn, state.space, state.slug, state.state)
                if state.state == "deleted":
                    _forget_unit(conn, state.space, state.slug)
            if git is not None:
                _record_git(conn, git, t.confighub_git_bases)
        # 4. Deletes reach ConfigHub last: the state store already says deleted, so a
        # delete retried after ConfigHub's answer was lost finds it done.
        for state, unit in doomed:
            self.api.delete_unit(
                str(unit["SpaceID"]),
                str(unit["UnitID"]),
                f"deleting unit {state.space}/{state.slug}",
            )
        return outcomes

    def _deleted(self, state: UnitStateChange) -> bool:
        """A delete asked again of a unit ConfigHub no longer has, that we deleted."""
        if state.state != "deleted":
            return False
        side = self._side_units(state.space).get(state.slug)
        return side is not None and side["state"] == "deleted"

    def _decide(self, change: UnitChange, unit: dict[str, Any] | None) -> ChangeOutcome | None:
        """The outcome of a change that writes nothing (a replay, the same content), or
        None when it writes; StaleVersion when it was planned on another version."""
        notes = (unit or {}).get("Annotations") or {}
        head = int((unit or {}).get("HeadRevisionNum") or 0)
        if (
            unit is not None
            and change.idempotency_key
            and notes.get(A_KEY) == change.idempotency_key
            and notes.get(A_KEY_REVISION) == str(head)
        ):
            return ChangeOutcome(space=change.space, slug=change.slug, revision=head, created=False)
        current = int(notes.get(A_VERSION) or head) if unit is not None else None
        if current != change.expected_version:
            raise StaleVersion(
                f"unit {change.space}/{change.slug} is at version {current}, "
                f"the change was planned on {change.expected_version}"
            )
        if (
            unit is not None
            and json_equal(decode_data(unit.get("Data")), change.data)
            and not (change.source == "rollback" and self._marked(change.space, change.slug, head))
        ):
            return ChangeOutcome(space=change.space, slug=change.slug, revision=head, created=False)
        return None

    def _marked(self, space: str, slug: str, number: int) -> bool:
        """Whether a capture marked revision ``number`` as in conflict with what runs.

        A rollback to such a head is the operator's decision to keep its values. ConfigHub
        makes no revision for identical data, so the rollback is recorded on the head
        itself (source, author, tags without the mark), as the embedded store records it
        as a new revision.
        """
        side = self._side_revisions(space, slug).get(number)
        return bool(side and conflict_paths(side["tags"] or {}))

    def _write_change(self, change: UnitChange, unit: dict[str, Any] | None) -> ChangeOutcome:
        what = f"writing unit {change.space}/{change.slug}"
        if unit is None:
            space_id = self._space_id(change.space, create={})
            assert space_id is not None
            body: dict[str, Any] = {
                "Slug": change.slug,
                "DisplayName": change.slug,
                "ToolchainType": TOOLCHAIN,
                "Data": encode_data(change.data),
                "LastChangeDescription": change.description,
                "Annotations": {A_VERSION: "1", A_KEY: change.idempotency_key, A_KEY_REVISION: "1"},
            }
            if change.labels:
                body["Labels"] = dict(change.labels)
            try:
                written = self.api.create_unit(space_id, body, what)
            except ConfigHubConflict as e:
                raise StaleVersion(
                    f"unit {change.space}/{change.slug} is at version 1, "
                    "the change was planned on None (created meanwhile)"
                ) from e
            number = int(written.get("HeadRevisionNum") or 1)
            if number != 1:  # ConfigHub numbered it otherwise: say so in the key annotation
                self.api.patch_unit(
                    space_id,
                    str(written["UnitID"]),
                    {"Annotations": {A_KEY_REVISION: str(number)}},
                    what,
                )
        else:
            number = self._put(
                change.space,
                change.slug,
                unit,
                change.expected_version,
                change.data,
                change.description,
                labels=change.labels,
                notes={A_KEY: change.idempotency_key},
                rollback_to=change.tags.get("rollback_to") if change.source == "rollback" else None,
            )
        return ChangeOutcome(space=change.space, slug=change.slug, revision=number, created=True)

    def _put(
        self,
        space: str,
        slug: str,
        unit: dict[str, Any],
        expected: int | None,
        data: dict[str, Any],
        description: str,
        *,
        labels: dict[str, str] | None = None,
        notes: dict[str, str] | None = None,
        rollback_to: str | None = None,
        new_version: int | None = None,
    ) -> int:
        """A new head revision with ``data``: PUT with ConfigHub's ``Version`` (409 → read
        again; StaleVersion when our version moved). Returns its revision number."""
        what = f"writing unit {space}/{slug}"
        for _ in range(PUT_ATTEMPTS):
            annotations = dict(unit.get("Annotations") or {})
            head = int(unit.get("HeadRevisionNum") or 0)
            current = int(annotations.get(A_VERSION) or head)
            if expected is not None and current != expected:
                raise StaleVersion(
                    f"unit {space}/{slug} is at version {current}, "
                    f"the change was planned on {expected}"
                )
            annotations[A_VERSION] = str(new_version if new_version is not None else current + 1)
            annotations[A_KEY_REVISION] = str(head + 1)
            annotations[A_KEY] = ""  # a write without a key is nobody's replay
            annotations.update(notes or {})
            body = {
                **unit,
                "Data": encode_data(data),
                "LastChangeDescription": description,
                "Annotations": annotations,
            }
            if labels is not None:
                body["Labels"] = dict(labels)
                if not labels:
                    body.pop("Labels", None)
            revision_id = None
            if rollback_to and rollback_to.isdigit():
                revision_id = self._rollback_source(space, slug, unit, int(rollback_to), data)
                if revision_id:
                    body.pop("Data", None)
            try:
                written = self.api.update_unit(
                    str(unit["SpaceID"]), str(unit["UnitID"]), body, what, revision_id=revision_id
                )
            except ConfigHubConflict:
                found = self._find_unit(space, slug)
                if found is None:
                    raise StaleVersion(
                        f"unit {space}/{slug} was deleted during the write"
                    ) from None
                unit = found[1]
                continue
            number = int(written.get("HeadRevisionNum") or 0)
            if number != head + 1:  # identical data made no revision, or numbering differs
                self.api.patch_unit(
                    str(unit["SpaceID"]),
                    str(unit["UnitID"]),
                    {"Annotations": {A_KEY_REVISION: str(number)}},
                    what,
                )
            return number
        raise StaleVersion(f"unit {space}/{slug} kept changing during the write")

    def _rollback_source(
        self, space: str, slug: str, unit: dict[str, Any], number: int, data: dict[str, Any]
    ) -> str | None:
        """The ``RevisionID`` to restore when a rollback writes exactly revision N's data."""
        revs = self._revisions(space, slug, str(unit["SpaceID"]), str(unit["UnitID"]), number)
        for rev in revs:
            if int(rev.get("RevisionNum") or 0) == number and json_equal(
                decode_data(rev.get("Data")), data
            ):
                return str(rev.get("RevisionID") or "") or None
        return None

    def _record_revision(
        self,
        change: UnitChange,
        number: int,
        tags: dict[str, str],
        *,
        approvals: list[Any] | None = None,
        key: str | None = None,
        conn: Connection | None = None,
    ) -> None:
        if conn is None:
            with self._write() as own:
                self._record_revision(change, number, tags, approvals=approvals, key=key, conn=own)
            return
        values = {
            "source": change.source,
            "tags": tags,
            "author": change.author,
            "policy": change.policy.model_dump(mode="json"),
            "approvals": approvals or [],
            "idempotency_key": change.idempotency_key if key is None else key,
        }
        c = t.confighub_revisions.c
        where = (c.space == change.space, c.unit == change.slug, c.number == number)
        if conn.execute(update(t.confighub_revisions).where(*where).values(**values)).rowcount:
            return
        conn.execute(
            insert(t.confighub_revisions).values(
                space=change.space, unit=change.slug, number=number, **values
            )
        )

    def _set_state(self, space: str, slug: str, state: str) -> None:
        with self._write() as conn:
            _set_state(conn, space, slug, state)

    def set_space_gates(self, change: GatesUpdate) -> tuple[SpaceRecord, list[str]]:
        # With ConfigHub as the authority, actuator confighub is this store's to hold.
        return self.state.set_space_gates(change, confighub=True)

    def record_approval(
        self, space: str, slug: str, number: int, approval: Approval
    ) -> RevisionRecord:
        found = self.get_revision(space, slug, number)
        if found is None:
            raise NotFound(f"unit {space}/{slug} has no revision {number}")
        conflict = capture_conflict(space, slug, number, found.tags)
        if conflict:
            raise CaptureConflict(conflict)
        c = t.confighub_revisions.c
        where = (c.space == space, c.unit == slug, c.number == number)
        with self._write() as conn:
            query = select(t.confighub_revisions.c.approvals).where(*where)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            approvals = [Approval.model_validate(a) for a in (row[0] if row else [])]
            if all(a.by != approval.by for a in approvals):
                approvals.append(approval)
            dumped = [a.model_dump(mode="json") for a in approvals]
            if row is None:
                conn.execute(
                    insert(t.confighub_revisions).values(
                        space=space,
                        unit=slug,
                        number=number,
                        source=found.source,
                        tags=found.tags,
                        author=found.author,
                        policy=found.policy.model_dump(mode="json"),
                        approvals=dumped,
                        idempotency_key="",
                    )
                )
            else:
                conn.execute(update(t.confighub_revisions).where(*where).values(approvals=dumped))
        got = self.get_revision(space, slug, number)
        assert got is not None
        return got

    def record_applied(
        self, space: str, slug: str, number: int, *, live: bool, applied: bool = True
    ) -> UnitRecord:
        found = self._find_unit(space, slug)
        if found is None:
            raise NotFound(f"unit {space}/{slug} does not exist")
        c = t.confighub_units.c
        values: dict[str, Any] = {}
        if applied:
            values["last_applied_revision"] = _at_least(c.last_applied_revision, number)
        if live:
            values["live_revision"] = _at_least(c.live_revision, number)
        with self._write() as conn:
            _upsert_side_unit(
                conn,
                space,
                slug,
                values,
                fresh={
                    "last_applied_revision": number if applied else None,
                    "live_revision": number if live else None,
                },
            )
        unit = self.get_unit(space, slug)
        assert unit is not None
        if self._mirror(space, slug, found[1], unit):
            unit = self.get_unit(space, slug)
            assert unit is not None
        return unit

    def _mirror(self, space: str, slug: str, raw: dict[str, Any], unit: UnitRecord) -> bool:
        """Our live and applied revisions, mirrored to the unit's annotations (a merge
        patch: no revision, no version of ours)."""
        notes = raw.get("Annotations") or {}
        wanted = {
            A_LIVE: str(unit.live_revision or ""),
            A_APPLIED: str(unit.last_applied_revision or ""),
        }
        if all(notes.get(k, "") == v for k, v in wanted.items()):
            return False
        self.api.patch_unit(
            str(raw["SpaceID"]),
            str(raw["UnitID"]),
            {"Annotations": wanted},
            f"recording the live revision of unit {space}/{slug}",
        )
        return True

    def classify_revision(
        self, space: str, slug: str, number: int, *, source: Source, tags: dict[str, str]
    ) -> RevisionRecord:
        found = self.get_revision(space, slug, number)
        if found is None:
            raise NotFound(f"unit {space}/{slug} has no revision {number}")
        c = t.confighub_revisions.c
        where = (c.space == space, c.unit == slug, c.number == number)
        merged = {**found.tags, **tags}
        with self._write() as conn:
            done = conn.execute(
                update(t.confighub_revisions).where(*where).values(source=source, tags=merged)
            ).rowcount
            if not done:
                conn.execute(
                    insert(t.confighub_revisions).values(
                        space=space,
                        unit=slug,
                        number=number,
                        source=source,
                        tags=merged,
                        author=found.author,
                        policy=found.policy.model_dump(mode="json"),
                        approvals=[a.model_dump(mode="json") for a in found.approvals],
                        idempotency_key="",
                    )
                )
        # The capture facts go to the unit's annotations too, for mixed fleets.
        facts: dict[str, str] = {PREFIX + "source": source}
        for name in ("tag", "incident", "capture_time"):
            if name in merged:
                facts[PREFIX + name.replace("_", "-")] = merged[name]
        unit = self._find_unit(space, slug)
        if unit is not None and int(unit[1].get("HeadRevisionNum") or 0) == number:
            self.api.patch_unit(
                unit[0], str(unit[1]["UnitID"]), {"Annotations": facts}, f"labelling {space}/{slug}"
            )
        got = self.get_revision(space, slug, number)
        assert got is not None
        return got

    def capture(
        self,
        change: UnitChange,
        *,
        expected_live: int | None = None,
        record: DriftRecord | None = None,
    ) -> CaptureResult:
        """What runs, written as a revision that becomes live (DESIGN "Capture").

        A pending head (ahead of live) is re-based onto the capture as a further
        revision; on a conflict the pending head's data is restored as the head (a
        ConfigHub head is always its newest revision) with its metadata and approvals.
        """
        found = self._find_unit(change.space, change.slug)
        if found is None:
            raise NotFound(f"unit {change.space}/{change.slug} does not exist")
        space_id, unit = found
        notes = unit.get("Annotations") or {}
        current = self._unit(change.space, unit, self._side_units(change.space).get(change.slug))
        live, head = current.live_revision, current.head_revision
        if (
            change.idempotency_key
            and notes.get(A_CAPTURE_KEY) == change.idempotency_key
            and notes.get(A_CAPTURE_REVISION) == str(live)
            and live is not None
        ):
            return CaptureResult(
                revision=live,
                created=False,
                head_revision=head,
                rebased_revision=_num(notes.get(A_CAPTURE_REBASED)),
                pending_revision=_num(notes.get(A_CAPTURE_PENDING)),
            )
        if current.version != change.expected_version and (
            expected_live is None or live != expected_live
        ):
            raise StaleVersion(
                f"unit {change.space}/{change.slug} is at version {current.version} "
                f"(live revision {live}), the capture was planned on version "
                f"{change.expected_version} (live revision {expected_live})"
            )
        pending = head if live is not None and head != live else None
        revs: dict[int, dict[str, Any]] = {}
        if pending is not None:
            assert live is not None
            for number in (live, head):
                for rev in self._revisions(
                    change.space, change.slug, space_id, str(unit["UnitID"]), number
                ):
                    revs[int(rev.get("RevisionNum") or 0)] = rev
        version = current.version + 1
        capture_notes = {
            A_CAPTURE_KEY: change.idempotency_key,
            A_CAPTURE_REVISION: "",
            A_CAPTURE_REBASED: "",
            A_CAPTURE_PENDING: str(pending or ""),
            PREFIX + "source": change.source,
            PREFIX + "capture-time": change.tags.get("capture_time", _now().isoformat()),
        }
        for name in ("tag", "incident"):
            if name in change.tags:
                capture_notes[PREFIX + name] = change.tags[name]
        number = self._put(
            change.space,
            change.slug,
            unit,
            current.version,  # as read: a write racing in is stale
            change.data,
            change.description,
            notes=capture_notes,
            new_version=version,
        )
        self._record_revision(change, number, change.tags)
        new_head, rebased = number, None
        conflicts: list[Any] = []
        if pending is not None and live in revs and head in revs:
            old = self._revision(change.space, change.slug, revs[head], None)
            side = self._side_revisions(change.space, change.slug).get(head)
            if side is not None:
                old = self._revision(change.space, change.slug, revs[head], side)
            plan = capture_over_pending(
                decode_data(revs[live].get("Data")),
                PendingHead(
                    number=head,
                    data=old.data,
                    tags=old.tags,
                    description=old.description,
                    source=old.source,
                ),
                change.data,
                number,
            )
            conflicts = plan.conflicts
            again = self._find_unit(change.space, change.slug)
            assert again is not None
            if conflicts:
                # A ConfigHub head is always its newest revision: the pending change is
                # restored above the capture, carrying the mark the gates read.
                new_head = self._put(
                    change.space,
                    change.slug,
                    again[1],
                    version,
                    old.data,
                    change.description + plan.note,
                    notes=capture_notes,
                    new_version=version,
                    rollback_to=str(head),
                )
                self._record_revision(
                    change.model_copy(
                        update={
                            "source": old.source,
                            "author": old.author,
                            "policy": old.policy,
                        }
                    ),
                    new_head,
                    {
                        **plan.kept_tags,
                        "restored_from": str(head),
                        "captured_below": str(number),
                    },
                    approvals=[a.model_dump(mode="json") for a in old.approvals],
                    key="",
                )
            elif plan.rebased is not None:
                rebased = new_head = self._put(
                    change.space,
                    change.slug,
                    again[1],
                    version,
                    plan.rebased,
                    plan.rebased_description,
                    notes=capture_notes,
                    new_version=version,
                )
                self._record_revision(
                    change.model_copy(
                        update={
                            "data": plan.rebased,
                            "description": plan.rebased_description,
                            "source": "rebase",
                            "author": old.author,
                            "policy": old.policy,
                        }
                    ),
                    rebased,
                    plan.rebased_tags,
                    key=f"{change.idempotency_key}/rebase" if change.idempotency_key else "",
                )
        c = t.confighub_units.c
        with self._write() as conn:
            _upsert_side_unit(
                conn,
                change.space,
                change.slug,
                {"live_revision": _at_least(c.live_revision, number)},
                fresh={"live_revision": number},
            )
            if record is not None:
                from authority.sql import _record_drift

                _record_drift(
                    conn,
                    record.model_copy(
                        update={
                            "revision": number,
                            "head_revision": new_head,
                            "rebased_revision": rebased,
                            "conflicts": conflicts,
                        }
                    ),
                )
        # Last: the capture is done once its revision is named here (a retry finds it).
        final = self._find_unit(change.space, change.slug)
        if final is not None:
            self.api.patch_unit(
                final[0],
                str(final[1]["UnitID"]),
                {
                    "Annotations": {
                        A_CAPTURE_REVISION: str(number),
                        A_CAPTURE_REBASED: str(rebased or ""),
                        A_LIVE: str(number),
                    }
                },
                f"recording the capture of unit {change.space}/{change.slug}",
            )
        return CaptureResult(
            revision=number,
            created=True,
            head_revision=new_head,
            rebased_revision=rebased,
            conflicts=conflicts,
            pending_revision=pending,
        )

    # ---- what lives only in the state store ------------------------------------------

    def set_drift_paused(self, space: str, unit: str, paused: bool) -> None:
        self.state.set_drift_paused(space, unit, paused)

    def list_prs(self, space: str | None = None) -> list[PullRequest]:
        return self.state.list_prs(space)

    def record_pr(self, pr: PullRequest, *, repo: str, body: str | None) -> None:
        self.state.record_pr(pr, repo=repo, body=body)

    def next_pr_number(self) -> int:
        return self.state.next_pr_number()

    def record_drift(self, record: DriftRecord) -> None:
        self.state.record_drift(record)

    def list_drift(self, space: str, unit: str | None = None) -> list[DriftRecord]:
        return self.state.list_drift(space, unit)

    def count_drift(self, sweep_id: str) -> dict[str, int]:
        return self.state.count_drift(sweep_id)

    def end_sweep_cover(self, cadence: int | None, *, since: datetime) -> list[tuple[str, str]]:
        return self.state.end_sweep_cover(cadence, since=since)

    def record_in_sync(
        self,
        space: str,
        units: dict[str, int],
        *,
        sweep_id: str,
        checked_at: datetime,
        unless_after: datetime,
        cadence_seconds: int | None = None,
    ) -> list[str]:
        return self.state.record_in_sync(
            space,
            units,
            sweep_id=sweep_id,
            checked_at=checked_at,
            unless_after=unless_after,
            cadence_seconds=cadence_seconds,
        )


def _set_state(conn: Connection, space: str, slug: str, state: str) -> None:
    values: dict[str, Any] = {"state": state}
    if state == "deleted":
        values["live_revision"] = None  # nothing runs any more
    _upsert_side_unit(conn, space, slug, values)


def _forget_unit(conn: Connection, space: str, slug: str) -> None:
    """A deleted unit leaves ConfigHub with its revisions: what the state store held for
    them goes too, so a unit created later under the slug (numbered from 1 again)
    inherits no approval, policy result, source or Git base of the old one."""
    conn.execute(
        delete(t.confighub_revisions).where(
            t.confighub_revisions.c.space == space, t.confighub_revisions.c.unit == slug
        )
    )
    conn.execute(
        delete(t.confighub_git_bases).where(
            t.confighub_git_bases.c.space == space, t.confighub_git_bases.c.unit == slug
        )
    )
    _upsert_side_unit(conn, space, slug, {"git_revision": None, "last_applied_revision": None})


def _at_least(column: Any, number: int) -> Any:
    return case((or_(column.is_(None), column < number), literal(number)), else_=column)


def _upsert_side_unit(
    conn: Connection,
    space: str,
    slug: str,
    values: dict[str, Any],
    *,
    fresh: dict[str, Any] | None = None,
) -> None:
    """Update the unit's row in the state store, or insert it (``fresh`` replaces
    column expressions that need a row to exist)."""
    c = t.confighub_units.c
    now = _now()
    done = conn.execute(
        update(t.confighub_units)
        .where(c.space == space, c.unit == slug)
        .values(updated_at=now, **values)
    ).rowcount
    if done:
        return
    row: dict[str, Any] = {
        "state": "active",
        "git_revision": None,
        "live_revision": None,
        "last_applied_revision": None,
        **values,
        **(fresh or {}),
    }
    conn.execute(insert(t.confighub_units).values(space=space, unit=slug, updated_at=now, **row))
