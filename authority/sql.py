"""The embedded authority store: SQLAlchemy 2 on SQLite or PostgreSQL, same code."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    create_engine,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError

from authority import tables as t
from authority.schema import migrate
from domain.authority import (
    GIT_SOURCES,
    Approval,
    ChangeOutcome,
    GatesUpdate,
    PolicyBundle,
    PolicyResult,
    RevisionRecord,
    Source,
    SpaceRecord,
    SpaceSpec,
    SyncSettings,
    UnitChange,
    UnitRecord,
    UnitStateChange,
)
from domain.diff import FieldConflict, json_equal
from domain.drift import (
    CaptureResult,
    DriftRecord,
    LastDrift,
    PendingHead,
    capture_conflict,
    capture_over_pending,
)
from domain.errors import BadInput, CaptureConflict, NotFound, StaleVersion
from domain.publish import GitBase, GitRecord
from domain.redact import redact_url
from domain.sweep import (
    BULK_STATES,
    SCHEDULED_PREFIX,
    SWEEP_MESSAGE,
    ends_cover,
    sweep_cadence,
    sweep_message,
)
from domain.sync import PullRequest

# How long an opener waits for another to finish switching a new SQLite file to WAL
# (the same as the busy timeout every connection sets).
WAL_SWITCH_WAIT_SECONDS = 30.0


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back naive (they were written as UTC); PostgreSQL
    # hands them back in the session's time zone.
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def make_engine(url: str, field: str = "TRIBUTARY_AUTHORITY") -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql://…`` (psycopg 3).

    A URL that is not one (``field`` names the setting it came from) is ``BadInput``
    with the URL shown without its credentials."""
    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(backend)
        parsed.get_dialect()  # a driver that is not installed (postgresql+bogus://)
    except (ValueError, ArgumentError, NoSuchModuleError):
        # not chained: SQLAlchemy's message quotes the whole URL, password and all
        raise BadInput(
            f"{redact_url(url)!r} is not a database URL (sqlite:///PATH or postgresql://…)",
            field=field,
        ) from None
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise BadInput(
                    f"{redact_url(url)!r}: cannot create the database's folder "
                    f"({e.strerror or type(e).__name__})",
                    field=field,
                ) from e
        engine = create_engine(parsed, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True)


def _enable_wal(cur: sqlite3.Cursor) -> None:
    """Put the file in WAL mode, waiting out other openers.

    Switching a new file to WAL turns this connection's read lock into a write lock.
    When another connection holds the write lock (a worker starting at the same time,
    migrating), SQLite answers "database is locked" at once instead of using the busy
    timeout, because waiting while holding a read lock could deadlock. That lock is
    let go at the other's commit, so try again until then.
    """
    deadline = time.monotonic() + WAL_SWITCH_WAIT_SECONDS
    delay = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves so writers can take the lock up front.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        _enable_wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that later writes can fail with "database is
        # locked" instead of waiting; writers take the write lock at BEGIN.
        immediate = conn.get_execution_options().get("tributary_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class SqlStore:
    """``AuthorityStore`` on a relational database."""

    def __init__(self, url: str, *, field: str = "TRIBUTARY_AUTHORITY") -> None:
        self.url = url
        self.engine = make_engine(url, field)
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(tributary_write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    # ---- reads -------------------------------------------------------------

    def get_space(self, name: str) -> SpaceRecord | None:
        with self._read() as conn:
            row = conn.execute(select(t.spaces).where(t.spaces.c.name == name)).mappings().first()
        return _space(row) if row else None

    def list_spaces(self) -> list[SpaceRecord]:
        with self._read() as conn:
            rows = conn.execute(select(t.spaces).order_by(t.spaces.c.name)).mappings().all()
        return [_space(r) for r in rows]

    def list_units(self, space: str) -> list[UnitRecord]:
        with self._read() as conn:
            rows = (
                conn.execute(
                    select(t.units).where(t.units.c.space == space).order_by(t.units.c.slug)
                )
                .mappings()
                .all()
            )
        return [_unit(r) for r in rows]

    def get_unit(self, space: str, slug: str) -> UnitRecord | None:
        with self._read() as conn:
            row = conn.execute(_unit_query(space, slug)).mappings().first()
        return _unit(row) if row else None

    def list_revisions(self, space: str, slug: str) -> list[RevisionRecord]:
        with self._read() as conn:
            rows = (
                conn.execute(
                    select(t.revisions)
                    .where(t.revisions.c.space == space, t.revisions.c.unit == slug)
                    .order_by(t.revisions.c.number)
                )
                .mappings()
                .all()
            )
        return [_revision(r) for r in rows]

    def get_revision(self, space: str, slug: str, number: int) -> RevisionRecord | None:
        found = self.get_revisions(space, [(slug, number)])
        return found[0] if found else None

    def get_revisions(self, space: str, keys: list[tuple[str, int]]) -> list[RevisionRecord]:
        if not keys:
            return []
        out: list[RevisionRecord] = []
        with self._read() as conn:
            # Chunked so 10,000 units stay under every driver's parameter limit.
            for start in range(0, len(keys), 400):
                chunk = keys[start : start + 400]
                rows = (
                    conn.execute(
                        select(t.revisions).where(
                            t.revisions.c.space == space,
                            tuple_(t.revisions.c.unit, t.revisions.c.number).in_(chunk),
                        )
                    )
                    .mappings()
                    .all()
                )
                out.extend(_revision(r) for r in rows)
        return out

    def git_bases(self, space: str) -> dict[str, GitBase]:
        with self._read() as conn:
            rows = (
                conn.execute(select(t.git_bases).where(t.git_bases.c.space == space))
                .mappings()
                .all()
            )
        return {
            r["unit"]: GitBase(slug=r["unit"], commit=r["commit"], data=r["data"]) for r in rows
        }

    def is_published(self, space: str, commit: str) -> bool:
        with self._read() as conn:
            found = conn.execute(
                select(t.published_commits.c.commit).where(
                    t.published_commits.c.space == space, t.published_commits.c.commit == commit
                )
            ).first()
        return found is not None

    # ---- writes ------------------------------------------------------------

    def commit(
        self,
        changes: list[UnitChange],
        *,
        spaces: list[SpaceSpec] | None = None,
        states: list[UnitStateChange] | None = None,
        git: GitRecord | None = None,
    ) -> list[ChangeOutcome]:
        try:
            with self._write() as conn:
                for spec in spaces or []:
                    _upsert_space(conn, spec)
                outcomes = [_apply_change(conn, change) for change in changes]
                for change in states or []:
                    _set_state(conn, change.space, change.slug, change.state)
                if git is not None:
                    _record_git(conn, git)
                return outcomes
        except IntegrityError as e:
            # Two writers created the same unit at once; the loser re-plans.
            raise StaleVersion(f"concurrent write: {e.orig}") from e

    def record_approval(
        self, space: str, slug: str, number: int, approval: Approval
    ) -> RevisionRecord:
        with self._write() as conn:
            # Read-modify-write of the approvals list: two approvers at once must not
            # each append to the list the other has not seen. SQLite's BEGIN IMMEDIATE
            # (``_write``) serialises writers already; PostgreSQL needs the row lock.
            query = _revision_query(space, slug, number)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).mappings().first()
            if row is None:
                raise NotFound(f"unit {space}/{slug} has no revision {number}")
            conflict = capture_conflict(space, slug, number, row["tags"])
            if conflict:
                raise CaptureConflict(conflict)
            approvals = [Approval.model_validate(a) for a in row["approvals"]]
            if all(a.by != approval.by for a in approvals):
                approvals.append(approval)
                conn.execute(
                    update(t.revisions)
                    .where(
                        t.revisions.c.space == space,
                        t.revisions.c.unit == slug,
                        t.revisions.c.number == number,
                    )
                    .values(approvals=[a.model_dump(mode="json") for a in approvals])
                )
            row = conn.execute(_revision_query(space, slug, number)).mappings().one()
        return _revision(row)

    def set_space_gates(
        self, change: GatesUpdate, *, confighub: bool = False
    ) -> tuple[SpaceRecord, list[str]]:
        """Change a space's gates (the admin command); returns it and what changed.

        Records who changed them and when, even when nothing changed: the call
        itself is the admin's statement. ``confighub``: this store is the state store
        beside the ConfigHub authority (``ConfigHubStore``), which alone can hold the
        ``confighub`` actuator; as the embedded authority it is refused.
        """
        with self._write() as conn:
            row = (
                conn.execute(select(t.spaces).where(t.spaces.c.name == change.space))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"space {change.space!r} does not exist in the authority")
            if change.actuator == "confighub" and not confighub:
                raise BadInput(
                    "actuator confighub applies through ConfigHub, but this worker's authority "
                    "is the embedded store; run the worker with TRIBUTARY_AUTHORITY=https://… "
                    "(ConfigHub) or choose kubernetes or argocd",
                    field="--actuator",
                )
            actuator = change.actuator or row["actuator"]
            if actuator == "argocd" and not (
                change.argocd_app if change.argocd_app is not None else row["argocd_app"]
            ):
                raise BadInput(
                    f"actuator argocd needs the Argo CD Application that delivers space "
                    f"{change.space}: give --argocd-app NAME",
                    field="--argocd-app",
                )
            now = _now()
            values: dict[str, Any] = {}
            for column in GATE_COLUMNS:
                wanted = getattr(change, column)
                if wanted is not None and not json_equal(row[column], wanted):
                    values[column] = wanted
            sync = dict(row["sync"] or {})
            if change.base is not None and sync.get("base", "") != change.base:
                values["sync"] = {**sync, "base": change.base}
            changed = sorted("base" if k == "sync" else k for k in values)
            conn.execute(
                update(t.spaces)
                .where(t.spaces.c.name == change.space)
                .values(
                    updated_at=now,
                    gates_set_by=change.by,
                    gates_set_at=now,
                    gates_asserted=change.asserted,
                    **values,
                )
            )
            row = (
                conn.execute(select(t.spaces).where(t.spaces.c.name == change.space))
                .mappings()
                .one()
            )
        return _space(row), changed

    def record_applied(
        self, space: str, slug: str, number: int, *, live: bool, applied: bool = True
    ) -> UnitRecord:
        # Never backwards: an apply of revision N that finishes after a capture of N+1
        # must not make N live again. The guard is in the UPDATE itself, so it holds
        # against a concurrent writer on either database (PostgreSQL re-evaluates the
        # expression on the row it locked).
        values: dict[str, Any] = {"updated_at": _now()}
        if applied:
            values["last_applied_revision"] = _at_least(t.units.c.last_applied_revision, number)
        if live:
            values["live_revision"] = _at_least(t.units.c.live_revision, number)
        with self._write() as conn:
            result = conn.execute(
                update(t.units)
                .where(t.units.c.space == space, t.units.c.slug == slug)
                .values(**values)
            )
            if result.rowcount != 1:
                raise NotFound(f"unit {space}/{slug} does not exist")
            row = conn.execute(_unit_query(space, slug)).mappings().one()
        return _unit(row)

    def classify_revision(
        self, space: str, slug: str, number: int, *, source: Source, tags: dict[str, str]
    ) -> RevisionRecord:
        with self._write() as conn:
            row = conn.execute(_revision_query(space, slug, number)).mappings().first()
            if row is None:
                raise NotFound(f"unit {space}/{slug} has no revision {number}")
            conn.execute(
                update(t.revisions)
                .where(
                    t.revisions.c.space == space,
                    t.revisions.c.unit == slug,
                    t.revisions.c.number == number,
                )
                .values(source=source, tags={**row["tags"], **tags})
            )
            row = conn.execute(_revision_query(space, slug, number)).mappings().one()
        return _revision(row)

    def capture(
        self,
        change: UnitChange,
        *,
        expected_live: int | None = None,
        record: DriftRecord | None = None,
    ) -> CaptureResult:
        """Write what runs as a revision that becomes the live revision (DESIGN "Capture").

        When head equals live, the capture is the new head too. When head is ahead (a
        change waiting at a gate or in flight), that change is re-based onto the capture
        three-way (base: the old live revision) as a new head revision, with no
        approvals; if both touched a field, the head stays and the conflict is returned.
        Nothing is applied or approved here.

        ``change.expected_version`` guards the write; when the unit moved on (a publish,
        a ``set``) but ``expected_live`` still names its live revision, the capture is
        still what runs on top of that revision, and the new head is re-based onto it.
        All in one transaction, with ``record`` (the drift row) in it.
        """
        with self._write() as conn:
            query = _unit_query(change.space, change.slug)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            unit = conn.execute(query).mappings().first()
            if unit is None:
                raise NotFound(f"unit {change.space}/{change.slug} does not exist")
            if change.idempotency_key:
                done = _capture_done(conn, change, unit)
                if done is not None:
                    return done
            live = unit["live_revision"]
            if unit["version"] != change.expected_version and (
                expected_live is None or live != expected_live
            ):
                raise StaleVersion(
                    f"unit {change.space}/{change.slug} is at version {unit['version']} "
                    f"(live revision {live}), the capture was planned on version "
                    f"{change.expected_version} (live revision {expected_live})"
                )
            head = unit["head_revision"]
            rows = _revision_rows(conn, change.space, change.slug, [head, live])
            number = _max_revision(conn, change.space, change.slug) + 1
            now = _now()
            _insert_revision(conn, change, number, now, tags=change.tags)
            new_head, rebased = number, None
            description = change.description
            conflicts: list[FieldConflict] = []
            if live is not None and head != live:
                pending = rows[head]
                plan = capture_over_pending(
                    rows[live]["data"],
                    PendingHead(
                        number=head,
                        data=pending["data"],
                        tags=pending["tags"],
                        description=pending["description"],
                        source=pending["source"],
                    ),
                    change.data,
                    number,
                )
                conflicts = plan.conflicts
                if conflicts:
                    new_head = head
                    description += plan.note
                    _set_tags(conn, change.space, change.slug, head, plan.kept_tags)
                elif plan.rebased is not None:
                    rebased = new_head = number + 1
                    description = plan.rebased_description
                    _insert_revision(
                        conn,
                        change.model_copy(
                            update={
                                "data": plan.rebased,
                                "description": plan.rebased_description,
                                "source": "rebase",
                                "author": pending["author"],
                                "policy": PolicyResult.model_validate(pending["policy"]),
                            }
                        ),
                        rebased,
                        now,
                        tags=plan.rebased_tags,
                        key=f"{change.idempotency_key}/rebase" if change.idempotency_key else "",
                    )
            conn.execute(
                update(t.units)
                .where(t.units.c.space == change.space, t.units.c.slug == change.slug)
                .values(
                    head_revision=new_head,
                    live_revision=number,
                    version=unit["version"] + 1,
                    last_change_description=description,
                    updated_at=now,
                )
            )
            written = CaptureResult(
                revision=number,
                created=True,
                head_revision=new_head,
                rebased_revision=rebased,
                conflicts=conflicts,
                pending_revision=head if live is not None and head != live else None,
            )
            if record is not None:
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
        return written

    def set_drift_paused(self, space: str, unit: str, paused: bool) -> None:
        """Pause or resume a unit's drift checks, for every run of its loop to come."""
        key = (t.drift_status.c.space == space, t.drift_status.c.unit == unit)
        with self._write() as conn:
            if conn.execute(update(t.drift_status).where(*key).values(paused=paused)).rowcount:
                return
            conn.execute(
                insert(t.drift_status).values(
                    space=space,
                    unit=unit,
                    state="paused" if paused else "unknown",
                    checked_at=_now(),
                    fields=[],
                    message="paused: no checks until resumed" if paused else "",
                    revision=None,
                    sweep_id="",
                    sweep_state="",
                    paused=paused,
                )
            )

    def list_prs(self, space: str | None = None) -> list[PullRequest]:
        query = select(t.pull_requests).order_by(t.pull_requests.c.number.desc())
        if space is not None:
            query = query.where(t.pull_requests.c.space == space)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            PullRequest(
                space=r["space"],
                number=r["number"],
                url=r["url"],
                state=r["state"],
                branch=r["branch"],
                base=r["base"],
                title=r["title"],
                head_commit=r["head_commit"],
                created_at=_utc(r["created_at"]),
                updated_at=_utc(r["updated_at"]),
            )
            for r in rows
        ]

    def record_pr(self, pr: PullRequest, *, repo: str, body: str | None) -> None:
        now = _now()
        values: dict[str, Any] = {
            "space": pr.space,
            "repo": repo,
            "branch": pr.branch,
            "base": pr.base,
            "url": pr.url,
            "state": pr.state,
            "title": pr.title,
            "head_commit": pr.head_commit,
            "updated_at": _as_utc(pr.updated_at or now),
        }
        if body is not None:
            values["body"] = body
        key = t.pull_requests.c.number == pr.number
        with self._write() as conn:
            if conn.execute(update(t.pull_requests).where(key).values(**values)).rowcount == 0:
                conn.execute(
                    insert(t.pull_requests).values(
                        number=pr.number,
                        created_at=_as_utc(pr.created_at or now),
                        **{"body": "", **values},
                    )
                )

    def next_pr_number(self) -> int:
        with self._read() as conn:
            found = conn.execute(select(func.max(t.pull_requests.c.number))).scalar_one()
        return int(found or 0) + 1

    def record_drift(self, record: DriftRecord) -> None:
        with self._write() as conn:
            _record_drift(conn, record)

    def list_drift(self, space: str, unit: str | None = None) -> list[DriftRecord]:
        query = select(t.drift_status).where(t.drift_status.c.space == space)
        if unit is not None:
            query = query.where(t.drift_status.c.unit == unit)
        with self._read() as conn:
            rows = conn.execute(query.order_by(t.drift_status.c.unit)).mappings().all()
        return [
            DriftRecord(
                space=r["space"],
                unit=r["unit"],
                state=r["state"],
                checked_at=_utc(r["checked_at"]),
                fields=r["fields"],
                message=r["message"],
                revision=r["revision"],
                sweep_id=r["sweep_id"],
                paused=bool(r["paused"]),
                last_drift=LastDrift.model_validate(r["last_drift"]) if r["last_drift"] else None,
            )
            for r in rows
        ]

    def count_drift(self, sweep_id: str) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(
                select(t.drift_status.c.sweep_state, func.count())
                .where(t.drift_status.c.sweep_id == sweep_id)
                .group_by(t.drift_status.c.sweep_state)
            ).all()
        return {str(state): int(n) for state, n in rows}

    def end_sweep_cover(self, cadence: int | None, *, since: datetime) -> list[tuple[str, str]]:
        c = t.drift_status.c
        claimed = (
            c.state == "in-sync",
            c.paused.is_(False),
            c.checked_at >= _as_utc(since),
            c.message.like(f"{SCHEDULED_PREFIX}%"),
            # the claim the schedule keeps: the common case, and no row to read
            c.message != sweep_message(cadence),
        )
        ended: list[tuple[str, str]] = []
        with self._write() as conn:
            rows = conn.execute(select(c.space, c.unit, c.message, c.checked_at).where(*claimed))
            for space, unit, message, checked_at in rows.all():
                if not ends_cover(message, cadence):
                    continue
                # Only the row as read: a loop's or a sweep's newer record is left alone.
                changed = conn.execute(
                    update(t.drift_status)
                    .where(
                        c.space == space,
                        c.unit == unit,
                        c.message == message,
                        c.checked_at == checked_at,
                    )
                    .values(message=SWEEP_MESSAGE)
                )
                if changed.rowcount:
                    ended.append((str(space), str(unit)))
        return ended

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
        # One UPDATE per live revision number and chunk (a fleet shares few numbers).
        # A paused row, or one in a state its loop owns, is left alone and the unit is
        # not returned. A row written after ``unless_after`` is its loop's newer word:
        # in sync at the same revision, the sweep only counts it as its own. A unit with
        # no row yet (its loop never recorded) gets the sweep's.
        by_revision: dict[int, list[str]] = {}
        for unit, revision in units.items():
            by_revision.setdefault(revision, []).append(unit)
        c = t.drift_status.c
        at = _as_utc(checked_at)
        message = sweep_message(cadence_seconds)
        with self._write() as conn:
            for revision, names in by_revision.items():
                for start in range(0, len(names), 400):
                    chunk = names[start : start + 400]
                    conn.execute(
                        update(t.drift_status)
                        .where(
                            c.space == space,
                            c.unit.in_(chunk),
                            c.checked_at <= _as_utc(unless_after),
                            c.paused.is_(False),
                            c.state.in_(sorted(BULK_STATES)),
                        )
                        .values(
                            state="in-sync",
                            checked_at=at,
                            fields=[],
                            message=_keep_claim(c.message, message),
                            revision=revision,
                            sweep_id=sweep_id,
                            sweep_state="in-sync",
                        )
                    )
                    conn.execute(
                        update(t.drift_status)
                        .where(
                            c.space == space,
                            c.unit.in_(chunk),
                            c.checked_at > _as_utc(unless_after),
                            c.paused.is_(False),
                            c.state == "in-sync",
                            c.revision == revision,
                        )
                        .values(sweep_id=sweep_id, sweep_state="in-sync")
                    )
                    have = {
                        str(u)
                        for (u,) in conn.execute(
                            select(c.unit).where(c.space == space, c.unit.in_(chunk))
                        ).all()
                    }
                    if missing := [u for u in chunk if u not in have]:
                        conn.execute(
                            insert(t.drift_status),
                            [
                                {
                                    "space": space,
                                    "unit": u,
                                    "state": "in-sync",
                                    "checked_at": at,
                                    "fields": [],
                                    "message": message,
                                    "revision": revision,
                                    "sweep_id": sweep_id,
                                    "sweep_state": "in-sync",
                                    "paused": False,
                                }
                                for u in missing
                            ],
                        )
            recorded: list[str] = []
            names = list(units)
            for start in range(0, len(names), 400):
                recorded += [
                    str(u)
                    for (u,) in conn.execute(
                        select(c.unit).where(
                            c.space == space,
                            c.unit.in_(names[start : start + 400]),
                            c.sweep_id == sweep_id,
                            c.sweep_state == "in-sync",
                        )
                    ).all()
                ]
        return recorded

    def list_unit_keys(self, after: tuple[str, str] | None, limit: int) -> list[tuple[str, str]]:
        query = select(t.units.c.space, t.units.c.slug).where(t.units.c.state == "active")
        if after is not None:
            query = query.where(tuple_(t.units.c.space, t.units.c.slug) > after)
        query = query.order_by(t.units.c.space, t.units.c.slug).limit(limit)
        with self._read() as conn:
            return [(str(a), str(b)) for a, b in conn.execute(query).all()]


def _keep_claim(current: Any, message: str) -> Any:
    """The message a sweep's in-sync record gets. A manual sweep (no cadence) keeps the
    cadence a scheduled sweep's record claims: a loop may be sleeping on that claim, and
    the schedule's watch finds (and wakes) such loops only by it when the schedule stops
    (``end_sweep_cover``)."""
    if sweep_cadence(message) is not None:
        return message
    return case((current.like(f"{SCHEDULED_PREFIX}%"), current), else_=message)


def _record_drift(conn: Connection, record: DriftRecord) -> None:
    values: dict[str, Any] = {
        "state": record.state,
        # SQLite keeps no offset: store every instant as UTC.
        "checked_at": _as_utc(record.checked_at),
        "fields": [f.model_dump(mode="json") for f in record.fields],
        "message": record.message,
        "revision": record.revision,
    }
    if record.fields and record.state in ("drifted", "captured", "reverting", "reverted"):
        # The latest drift outlives the checks that find none after it was captured.
        values["last_drift"] = LastDrift(
            fields=record.fields,
            at=_as_utc(record.checked_at),
            revision=record.revision if record.state == "captured" else None,
            head_revision=record.head_revision,
            rebased_revision=record.rebased_revision,
            conflicts=record.conflicts,
        ).model_dump(mode="json")
    # A check outside a sweep (timer, watch, apply) leaves the sweep's answer alone.
    if record.sweep_id:
        values["sweep_id"] = record.sweep_id
        values["sweep_state"] = record.state
    key = (t.drift_status.c.space == record.space, t.drift_status.c.unit == record.unit)
    if conn.execute(update(t.drift_status).where(*key).values(**values)).rowcount == 0:
        conn.execute(
            insert(t.drift_status).values(
                space=record.space,
                unit=record.unit,
                **{"sweep_id": "", "sweep_state": "", "paused": False, **values},
            )
        )


def _capture_done(conn: Connection, change: UnitChange, unit: Any) -> CaptureResult | None:
    """An earlier attempt of this very capture (same idempotency key) already wrote it:
    it is still the live revision. (The same drift coming back later, after something
    else ran, is a new capture.)"""
    found = conn.execute(
        select(t.revisions.c.number).where(
            t.revisions.c.space == change.space,
            t.revisions.c.unit == change.slug,
            t.revisions.c.idempotency_key == change.idempotency_key,
            t.revisions.c.number == unit["live_revision"],
        )
    ).first()
    if found is None:
        return None
    number = int(found[0])
    rebased = conn.execute(
        select(t.revisions.c.number, t.revisions.c.tags).where(
            t.revisions.c.space == change.space,
            t.revisions.c.unit == change.slug,
            t.revisions.c.idempotency_key == f"{change.idempotency_key}/rebase",
        )
    ).first()
    return CaptureResult(
        revision=number,
        created=False,
        head_revision=unit["head_revision"],
        rebased_revision=int(rebased[0]) if rebased else None,
        pending_revision=int(rebased[1]["rebased_from"]) if rebased else None,
    )


def _insert_revision(
    conn: Connection,
    change: UnitChange,
    number: int,
    now: datetime,
    *,
    tags: dict[str, str],
    key: str | None = None,
) -> None:
    conn.execute(
        insert(t.revisions).values(
            space=change.space,
            unit=change.slug,
            number=number,
            data=change.data,
            description=change.description,
            source=change.source,
            tags=tags,
            author=change.author,
            policy=change.policy.model_dump(mode="json"),
            approvals=[],
            idempotency_key=change.idempotency_key if key is None else key,
            created_at=now,
        )
    )


def _at_least(column: Any, number: int) -> Any:
    """``column`` raised to ``number``, never lowered (NULL counts as lowest)."""
    return case(
        (or_(column.is_(None), column < number), literal(number)),
        else_=column,
    )


def _revision_rows(
    conn: Connection, space: str, slug: str, numbers: list[int | None]
) -> dict[int, Any]:
    wanted = [n for n in numbers if n is not None]
    return {
        r["number"]: r
        for r in conn.execute(
            select(t.revisions).where(
                t.revisions.c.space == space,
                t.revisions.c.unit == slug,
                t.revisions.c.number.in_(wanted),
            )
        ).mappings()
    }


def _set_tags(conn: Connection, space: str, slug: str, number: int, tags: dict[str, str]) -> None:
    conn.execute(
        update(t.revisions)
        .where(
            t.revisions.c.space == space,
            t.revisions.c.unit == slug,
            t.revisions.c.number == number,
        )
        .values(tags=tags)
    )


def _revision_query(space: str, slug: str, number: int) -> Any:
    return select(t.revisions).where(
        t.revisions.c.space == space, t.revisions.c.unit == slug, t.revisions.c.number == number
    )


def _set_state(conn: Connection, space: str, slug: str, state: str) -> None:
    values: dict[str, Any] = {"state": state, "updated_at": _now()}
    if state == "deleted":
        values["live_revision"] = None  # nothing runs any more
    result = conn.execute(
        update(t.units).where(t.units.c.space == space, t.units.c.slug == slug).values(**values)
    )
    if result.rowcount != 1:
        raise NotFound(f"unit {space}/{slug} does not exist")


def _unit_query(space: str, slug: str) -> Any:
    return select(t.units).where(t.units.c.space == space, t.units.c.slug == slug)


# Gate columns: seeded when a space is created, then written only by set_space_gates
# (`tributary space set`). A publish of an existing space never changes them.
GATE_COLUMNS = ("approval", "kinds", "namespaces", "destination", "actuator", "argocd_app")


def _upsert_space(conn: Connection, spec: SpaceSpec) -> None:
    now = _now()
    values: dict[str, Any] = {
        "environment": spec.environment,
        "approval": spec.approval,
        "drift": spec.drift,
        "drift_interval_seconds": spec.drift_interval_seconds,
        "labels": spec.labels,
        "repo": spec.repo,
        "overlay": spec.overlay,
        "ignore_paths": spec.ignore,
        "policy": spec.policy.model_dump(mode="json"),
        "sync": spec.sync.model_dump(mode="json"),
        "kinds": spec.kinds,
        "namespaces": spec.namespaces,
        "destination": spec.destination,
        "actuator": spec.actuator,
        "argocd_app": spec.argocd_app,
    }
    row = conn.execute(select(t.spaces).where(t.spaces.c.name == spec.name)).mappings().first()
    if row is None:
        conn.execute(
            insert(t.spaces).values(name=spec.name, created_at=now, updated_at=now, **values)
        )
        return
    for column in GATE_COLUMNS:
        del values[column]
    # The sync base branch is a gate too: the stored one stays.
    values["sync"] = {**values["sync"], "base": (row["sync"] or {}).get("base", "")}
    if any(not json_equal(row[k], v) for k, v in values.items()):
        conn.execute(
            update(t.spaces).where(t.spaces.c.name == spec.name).values(updated_at=now, **values)
        )


def _apply_change(conn: Connection, change: UnitChange) -> ChangeOutcome:
    if conn.execute(select(t.spaces.c.name).where(t.spaces.c.name == change.space)).first() is None:
        raise NotFound(f"space {change.space!r} does not exist")
    query = _unit_query(change.space, change.slug)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    unit = conn.execute(query).mappings().first()
    head = None
    if unit is not None:
        head = (
            conn.execute(
                select(t.revisions).where(
                    t.revisions.c.space == change.space,
                    t.revisions.c.unit == change.slug,
                    t.revisions.c.number == unit["head_revision"],
                )
            )
            .mappings()
            .first()
        )
    if (
        change.idempotency_key
        and head is not None
        and head["idempotency_key"] == change.idempotency_key
    ):
        return ChangeOutcome(
            space=change.space, slug=change.slug, revision=head["number"], created=False
        )
    current_version = unit["version"] if unit is not None else None
    if current_version != change.expected_version:
        raise StaleVersion(
            f"unit {change.space}/{change.slug} is at version {current_version}, "
            f"the change was planned on {change.expected_version}"
        )
    now = _now()
    if (
        unit is not None
        and head is not None
        and json_equal(head["data"], change.data)
        # A rollback to a head a capture conflicts with is the operator's decision to
        # keep its values: a new revision, free of the conflict.
        and not (change.source == "rollback" and capture_conflict("", "", 0, head["tags"]))
    ):
        if unit["state"] != "active":
            # Back in Git's render with the same content: adopted again, no revision.
            _set_state(conn, change.space, change.slug, "active")
        return ChangeOutcome(
            space=change.space, slug=change.slug, revision=unit["head_revision"], created=False
        )
    number = 1 if unit is None else _max_revision(conn, change.space, change.slug) + 1
    is_git = change.source in GIT_SOURCES
    labels = change.labels if change.labels is not None else (unit["labels"] if unit else {})
    if unit is None:
        conn.execute(
            insert(t.units).values(
                space=change.space,
                slug=change.slug,
                api_version=str(change.data.get("apiVersion", "")),
                kind=str(change.data.get("kind", "")),
                labels=labels,
                head_revision=number,
                live_revision=None,
                last_applied_revision=None,
                git_revision=number if is_git else None,
                version=1,
                last_change_description=change.description,
                state="active",
                created_at=now,
                updated_at=now,
            )
        )
    else:
        values: dict[str, Any] = {
            "head_revision": number,
            "version": unit["version"] + 1,
            "labels": labels,
            "last_change_description": change.description,
            "state": "active",
            "updated_at": now,
            "api_version": str(change.data.get("apiVersion", unit["api_version"])),
            "kind": str(change.data.get("kind", unit["kind"])),
        }
        if is_git:
            values["git_revision"] = number
        result = conn.execute(
            update(t.units)
            .where(
                and_(
                    t.units.c.space == change.space,
                    t.units.c.slug == change.slug,
                    t.units.c.version == unit["version"],
                )
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise StaleVersion(f"unit {change.space}/{change.slug} changed during the write")
    conn.execute(
        insert(t.revisions).values(
            space=change.space,
            unit=change.slug,
            number=number,
            data=change.data,
            description=change.description,
            source=change.source,
            tags=change.tags,
            author=change.author,
            policy=change.policy.model_dump(mode="json"),
            approvals=[],
            idempotency_key=change.idempotency_key,
            created_at=now,
        )
    )
    return ChangeOutcome(space=change.space, slug=change.slug, revision=number, created=True)


def _record_git(conn: Connection, git: GitRecord, bases: Any = t.git_bases) -> None:
    """New merge bases (compare-and-set on the base commit planned on), and the commit.

    ``bases``: the table of merge bases (the ConfigHub backend keeps its own).
    """
    now = _now()
    for base in git.bases:
        key = (bases.c.space == git.space, bases.c.unit == base.slug)
        query = select(bases.c.commit).where(*key)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        stored = conn.execute(query).scalar_one_or_none()
        if stored == base.commit:
            continue  # recorded by an earlier attempt of this very publish
        if (stored or "") != git.expected.get(base.slug, ""):
            raise StaleVersion(
                f"unit {git.space}/{base.slug}: Git's base moved to commit {stored} "
                "while this publish was planning"
            )
        values = {"commit": base.commit, "data": base.data, "recorded_at": now}
        if stored is None:
            conn.execute(insert(bases).values(space=git.space, unit=base.slug, **values))
        else:
            conn.execute(update(bases).where(*key).values(**values))
    published = (
        t.published_commits.c.space == git.space,
        t.published_commits.c.commit == git.commit,
    )
    if conn.execute(select(t.published_commits.c.commit).where(*published)).first() is None:
        conn.execute(
            insert(t.published_commits).values(space=git.space, commit=git.commit, published_at=now)
        )


def _max_revision(conn: Connection, space: str, slug: str) -> int:
    found = conn.execute(
        select(func.max(t.revisions.c.number)).where(
            t.revisions.c.space == space, t.revisions.c.unit == slug
        )
    ).scalar_one()
    return int(found or 0)


def _space(row: Any) -> SpaceRecord:
    return SpaceRecord(
        name=row["name"],
        environment=row["environment"],
        approval=row["approval"],
        drift=row["drift"],
        drift_interval_seconds=row["drift_interval_seconds"],
        labels=row["labels"],
        repo=row["repo"],
        overlay=row["overlay"],
        ignore=row["ignore_paths"],
        policy=PolicyBundle.model_validate(row["policy"]),
        sync=SyncSettings.model_validate(row["sync"] or {}),
        kinds=row["kinds"] or [],
        namespaces=row["namespaces"] or [],
        destination=row["destination"] or "",
        actuator=row["actuator"] or "kubernetes",
        argocd_app=row["argocd_app"] or "",
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        gates_set_by=row["gates_set_by"] or "",
        gates_set_at=_utc(row["gates_set_at"]) if row["gates_set_at"] else None,
        gates_asserted=row["gates_asserted"] or "",
    )


def _unit(row: Any) -> UnitRecord:
    # Built without validation: the columns are typed and NOT NULL where the model
    # requires a value, and a sweep reads every unit of a space (validating 1,000
    # records was about a tenth of a 1,000-unit sweep's worker CPU, py-spy).
    return UnitRecord.model_construct(
        space=row["space"],
        slug=row["slug"],
        api_version=row["api_version"],
        kind=row["kind"],
        labels=row["labels"],
        head_revision=row["head_revision"],
        live_revision=row["live_revision"],
        last_applied_revision=row["last_applied_revision"],
        git_revision=row["git_revision"],
        version=row["version"],
        last_change_description=row["last_change_description"],
        state=row["state"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
    )


def _revision(row: Any) -> RevisionRecord:
    return RevisionRecord(
        space=row["space"],
        unit=row["unit"],
        number=row["number"],
        data=row["data"],
        description=row["description"],
        source=row["source"],
        tags=row["tags"],
        author=row["author"],
        policy=PolicyResult.model_validate(row["policy"]),
        approvals=row["approvals"],
        created_at=_utc(row["created_at"]),
    )
