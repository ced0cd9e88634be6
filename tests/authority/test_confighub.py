"""authority/confighub.py against the contract fake: what the protocol suite cannot see —
the wire (UUIDs, base64, ``where``, omitempty, Version), retries, errors, the token."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from authority import open_store
from authority.confighub import ConfigHubStore
from authority.confighub_api import (
    ConfigHubApi,
    ConfigHubRejected,
    ConfigHubUnavailable,
    check_base_url,
)
from authority.sql import SqlStore
from domain.authority import GatesUpdate
from domain.errors import BadInput, NotFound
from tests.authority.test_store import SPACE, change, claim, space_spec
from tests.fakes.confighub import ApiError, FakeConfigHub

TOKEN = "chk-unit-secret-0a1b2c3d4e5f"


@pytest.fixture
def hub() -> Iterator[FakeConfigHub]:
    fake = FakeConfigHub(token=TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def _store(hub: FakeConfigHub, tmp_path: Path, sleeps: list[float], token: str = TOKEN) -> Any:
    api = ConfigHubApi(hub.url, token, sleep=sleeps.append)
    return ConfigHubStore(api, SqlStore(f"sqlite:///{tmp_path / 'state.db'}"))


@pytest.fixture
def store(hub: FakeConfigHub, tmp_path: Path, sleeps: list[float]) -> Iterator[ConfigHubStore]:
    s = _store(hub, tmp_path, sleeps)
    s.commit([], spaces=[space_spec()])
    yield s
    s.close()


def _raw(hub: FakeConfigHub, path: str, **params: str) -> Any:
    response = httpx.get(
        hub.url + path, params=params, headers={"Authorization": f"Bearer {hub.token}"}
    )
    return response.status_code, response.json()


# ---- selection and configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://hub.confighub.com/api", "http://127.0.0.1:8080", "http://localhost:9/api/"],
)
def test_https_or_loopback_http_is_accepted(url):
    assert check_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url", ["http://hub.confighub.com/api", "http://10.0.0.7", "ftp://hub", "https://"]
)
def test_plain_http_elsewhere_is_refused(url):
    with pytest.raises(BadInput, match=r"TRIBUTARY_AUTHORITY.*https://"):
        check_base_url(url)


@pytest.mark.parametrize(
    "url", ["https://hub.confighub.com:api/", "https://[hub", "https://a b/api"]
)
def test_a_url_that_is_no_address_is_refused_naming_its_variable(url):
    with pytest.raises(BadInput, match="CONFIGHUB_URL"):
        check_base_url(url, "CONFIGHUB_URL")


def test_a_token_in_the_url_is_refused_and_not_repeated():
    with pytest.raises(BadInput) as e:
        check_base_url(f"https://me:{TOKEN}@hub.confighub.com/api")
    assert TOKEN not in e.value.message
    assert "CONFIGHUB_TOKEN" in e.value.message


def test_a_missing_token_is_bad_input_naming_the_variable(monkeypatch):
    monkeypatch.delenv("CONFIGHUB_TOKEN", raising=False)
    with pytest.raises(BadInput, match="CONFIGHUB_TOKEN"):
        ConfigHubApi("https://hub.confighub.com/api")


def test_open_store_picks_confighub_from_confighub_url(hub, tmp_path, monkeypatch):
    monkeypatch.delenv("TRIBUTARY_AUTHORITY", raising=False)
    monkeypatch.setenv("CONFIGHUB_URL", hub.url)
    monkeypatch.setenv("CONFIGHUB_TOKEN", TOKEN)
    monkeypatch.setenv("TRIBUTARY_STATE", f"sqlite:///{tmp_path / 'state.db'}")
    s = open_store()
    try:
        assert isinstance(s, ConfigHubStore)
        assert TOKEN not in repr(s)
        assert (tmp_path / "state.db").exists()
    finally:
        s.close()
    with pytest.raises(BadInput):
        open_store("http://hub.example.com/api")


def test_a_bad_state_url_is_refused_naming_tributary_state(hub, monkeypatch):
    monkeypatch.setenv("CONFIGHUB_TOKEN", TOKEN)
    for state in ("mysql://u:canary-pw-0001@h/db", "postgresql://u:canary-pw-0001@h:pg/db"):
        monkeypatch.setenv("TRIBUTARY_STATE", state)
        with pytest.raises(BadInput) as e:
            open_store(hub.url, field="CONFIGHUB_URL")
        assert e.value.field == "TRIBUTARY_STATE"
        assert "canary-pw-0001" not in e.value.message


# ---- the wire -------------------------------------------------------------------------------


def test_a_publish_creates_the_space_and_unit_as_confighub_objects(store, hub):
    store.commit([change(claim(), None, description="CI: first", labels={"tier": "gold"})])

    status, spaces = _raw(hub, "/space", where=f"Slug = '{SPACE}'")
    assert status == 200
    [space] = [s["Space"] for s in spaces]
    assert space["Labels"] == {"environment": "dev"}
    status, units = _raw(hub, f"/space/{space['SpaceID']}/unit", where="Slug = 'u'")
    [extended] = units
    unit = extended["Unit"]  # a list answers ExtendedUnits
    assert yaml.safe_load(base64.b64decode(unit["Data"])) == claim()
    assert unit["HeadRevisionNum"] == 1
    assert unit["LastChangeDescription"] == "CI: first"
    assert unit["Labels"] == {"tier": "gold"}
    assert unit["Annotations"]["tributary.dev/version"] == "1"
    # omitempty: a never-applied unit has no live or applied revision keys at all
    assert "LiveRevisionNum" not in unit
    assert "LastAppliedRevisionNum" not in unit
    got = store.get_unit(SPACE, "u")
    assert (got.live_revision, got.last_applied_revision, got.head_revision) == (None, None, 1)


def test_an_update_puts_the_whole_unit_with_the_version_it_read(store, hub):
    store.commit([change(claim(), None)])
    store.commit([change(claim(256), 1, description="CI: bump")])

    puts = [r for r in hub.requests if r[0] == "PUT"]
    assert len(puts) == 1
    body = json.loads(puts[0][3])
    assert body["Version"] == 1  # ConfigHub's version, as read
    assert body["LastChangeDescription"] == "CI: bump"
    assert body["Slug"] == "u"
    assert body["UnitID"]
    [rev] = [r for r in hub.revisions[body["UnitID"]] if r["RevisionNum"] == 2]
    assert rev["Description"] == "CI: bump"  # the change description becomes the revision's


def test_a_concurrent_annotation_patch_is_retried_not_stale(store, hub):
    """A 409 caused by someone else's metadata write (no new revision) is retried."""
    store.commit([change(claim(), None)])
    unit = hub.unit_by_slug(SPACE, "u")
    bumped = {"done": False}
    original = hub.handle

    def handle(method, path, query, body, ctype):
        if method == "PUT" and not bumped["done"]:
            bumped["done"] = True
            unit["Version"] += 1  # e.g. a `cub unit update --patch` of a label
        return original(method, path, query, body, ctype)

    hub.handle = handle  # type: ignore[method-assign]
    out = store.commit([change(claim(256), 1)])
    assert out[0].revision == 2
    assert [r[0] for r in hub.requests].count("PUT") == 2


def test_a_rollback_restores_the_revision_by_its_id(store, hub):
    store.commit([change(claim(), None)])
    store.commit([change(claim(256), 1)])
    unit = hub.unit_by_slug(SPACE, "u")
    first = hub.revisions[unit["UnitID"]][0]["RevisionID"]
    rollback = change(claim(), 2, source="rollback", description="Rollback to revision 1")
    rollback.tags = {"rollback_to": "1"}

    [out] = store.commit([rollback])

    assert out.revision == 3
    assert any(r[0] == "PUT" and f"revision_id={first}" in r[1] for r in hub.requests)
    assert store.get_revision(SPACE, "u", 3).data == claim()
    assert store.get_revision(SPACE, "u", 3).source == "rollback"


def test_units_written_outside_tributary_read_with_the_seeds_conventions(store, hub):
    space_id = next(iter(hub.spaces))
    data = base64.b64encode(yaml.safe_dump(claim()).encode()).decode()
    response = httpx.post(
        f"{hub.url}/space/{space_id}/unit",
        json={"Slug": "by-cub", "ToolchainType": "Kubernetes/YAML", "Data": data,
              "LastChangeDescription": "CI: from the seed"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "Unit" not in response.json()  # create answers a bare Unit

    unit = store.get_unit(SPACE, "by-cub")
    assert (unit.version, unit.head_revision, unit.kind) == (1, 1, claim()["kind"])
    rev = store.get_revision(SPACE, "by-cub", 1)
    assert (rev.source, rev.description, rev.data) == ("ci", "CI: from the seed", claim())


def test_where_is_and_only_with_quoted_strings(hub):
    status, body = _raw(hub, "/space", where="Slug = 'a' OR Slug = 'b'")
    assert status == 400
    assert body["Code"] == "400"
    assert "where" in body["Message"]


def test_a_slug_with_a_quote_is_bad_input_before_any_request(store, hub):
    before = len(hub.requests)
    with pytest.raises(BadInput):
        store.get_unit(SPACE, "x' OR Slug = 'y")
    assert len(hub.requests) == before


# ---- retries and errors -------------------------------------------------------------------


def test_429_and_5xx_are_retried_with_backoff(store, hub, sleeps):
    store.commit([change(claim(), None)])
    sleeps.clear()
    hub.fail_next = [429, 503, 502]

    assert store.get_unit(SPACE, "u").head_revision == 1
    assert sleeps == [0.2, 0.4, 0.8]


def test_retries_end_in_a_retryable_error(store, hub, sleeps):
    hub.fail_next = [503] * 10
    with pytest.raises(ConfigHubUnavailable, match="503") as e:
        store.get_unit(SPACE, "u")
    assert not isinstance(e.value, NotFound)
    assert sleeps == [0.2, 0.4, 0.8, 1.6, 3.2]


def test_a_rejected_token_is_a_clear_decided_error_without_the_token(hub, tmp_path, sleeps):
    wrong = "chk-wrong-secret-99887766"
    s = _store(hub, tmp_path, sleeps, token=wrong)
    try:
        with pytest.raises(ConfigHubRejected) as e:
            s.get_unit(SPACE, "u")
    finally:
        s.close()
    assert e.value.status == 401
    assert "CONFIGHUB_TOKEN" in e.value.message
    assert SPACE in e.value.message
    assert wrong not in e.value.message
    assert TOKEN not in e.value.message
    assert sleeps == []  # not retried


def test_a_forbidden_write_names_the_space_and_unit(store, hub, sleeps):
    store.commit([change(claim(), None)])
    original = hub.handle

    def forbid(method, path, query, body, ctype):
        if method == "PUT":
            raise ApiError(403, "permission denied on space")
        return original(method, path, query, body, ctype)

    hub.handle = forbid  # type: ignore[method-assign]
    with pytest.raises(ConfigHubRejected) as e:
        store.commit([change(claim(256), 1)])
    assert e.value.status == 403
    assert f"unit {SPACE}/u" in e.value.message
    assert sleeps == []


def test_a_unit_gone_from_confighub_is_not_found_naming_it(store, hub):
    store.commit([change(claim(), None)])
    unit = hub.unit_by_slug(SPACE, "u")
    with pytest.raises(NotFound, match=f"{SPACE}/u"):
        store.api.update_unit(
            unit["SpaceID"], "00000000-0000-0000-0000-000000000000", {}, f"writing unit {SPACE}/u"
        )


# ---- deletes (the apply's orphan → delete on request path) ---------------------------------


def _deletes(hub: FakeConfigHub) -> list[str]:
    return [path for method, path, _, _ in hub.requests if method == "DELETE"]


def test_a_deleted_unit_is_deleted_in_confighub_and_its_side_state_forgotten(store, hub):
    from datetime import UTC, datetime

    from domain.authority import Approval, UnitStateChange

    store.commit([change(claim(), None)])
    store.record_approval(SPACE, "u", 1, Approval(by="ana", at=datetime.now(UTC)))
    store.record_applied(SPACE, "u", 1, live=True)
    unit = hub.unit_by_slug(SPACE, "u")
    deleted = UnitStateChange(space=SPACE, slug="u", state="deleted")

    store.commit([], states=[deleted])

    assert _deletes(hub) == [f"/space/{unit['SpaceID']}/unit/{unit['UnitID']}"]
    assert hub.unit_by_slug(SPACE, "u") is None
    assert unit["UnitID"] not in hub.revisions
    assert (store.get_unit(SPACE, "u"), store.list_units(SPACE)) == (None, [])
    store.commit([], states=[deleted])  # retried: ConfigHub is not asked again
    assert len(_deletes(hub)) == 1

    # Git renders the unit again: a new ConfigHub unit, numbered from 1, with nothing
    # of the old revision 1 (its approval above all)
    store.commit([change(claim(512), None)])
    again = store.get_revision(SPACE, "u", 1)
    assert (again.data, again.approvals, again.source) == (claim(512), [], "ci")
    unit = store.get_unit(SPACE, "u")
    assert (unit.state, unit.live_revision, unit.last_applied_revision) == ("active", None, None)


def test_a_delete_whose_answer_was_lost_is_done(store, hub, sleeps):
    from domain.authority import UnitStateChange

    store.commit([change(claim(), None)])
    hub.lose_delete_answers = 1  # deleted, then 503: the client asks again, 404

    store.commit([], states=[UnitStateChange(space=SPACE, slug="u", state="deleted")])

    assert len(_deletes(hub)) == 2
    assert len(hub.deleted) == 1
    assert len(sleeps) == 1
    assert store.get_unit(SPACE, "u") is None


def test_the_apply_records_a_delete_again_after_confighub_deleted_the_unit(store, hub):
    """``authority.record_applied`` retried after the unit left ConfigHub: done, not a
    NotFound that would fail the delete; a unit never there is still NotFound."""
    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from activities.authority import AuthorityActivities
    from domain.apply import RecordAppliedInput

    store.commit([change(claim(), None)])
    acts = AuthorityActivities(store)
    inp = RecordAppliedInput(space=SPACE, unit="u", revision=1, live=False, state="deleted")

    first = ActivityEnvironment().run(acts.record_applied, inp)
    second = ActivityEnvironment().run(acts.record_applied, inp)

    assert first.last_applied_revision == 1
    assert (second.live_revision, second.last_applied_revision) == (None, None)
    assert len(hub.deleted) == 1
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(acts.record_applied, inp.model_copy(update={"unit": "v"}))
    assert caught.value.type == "NotFound"


# ---- applies through ConfigHub (queued operations, unit events) ---------------------------


def test_an_apply_is_queued_then_completed_by_a_unit_event(store, hub, sleeps):
    store.commit([change(claim(), None)])
    unit = hub.unit_by_slug(SPACE, "u")
    hub.apply_polls = 3
    op = store.api.apply(unit["SpaceID"], unit["UnitID"], f"applying {SPACE}/u")
    assert op["RevisionNum"] == 1
    # LastAppliedRevisionNum moves when the apply is queued, LiveRevisionNum when done
    assert store.get_unit(SPACE, "u").last_applied_revision == 1
    assert store.get_unit(SPACE, "u").live_revision is None
    sleeps.clear()

    event = store.api.wait_for_operation(
        unit["SpaceID"],
        unit["UnitID"],
        op["QueuedOperationID"],
        f"applying {SPACE}/u",
        deadline=float("inf"),
    )

    assert event is not None
    assert event["Status"] == "Completed"
    assert sleeps == [0.2, 0.4]
    assert store.get_unit(SPACE, "u").live_revision == 1


def test_a_bulk_apply_answers_207_with_per_unit_errors(store, hub):
    store.commit([change(claim(), None, slug="a"), change(claim(), None, slug="b")])
    a, b = hub.unit_by_slug(SPACE, "a"), hub.unit_by_slug(SPACE, "b")
    hub.refuse_apply = {b["UnitID"]}

    actions, errors = store.api.bulk_apply(f"SpaceID = '{a['SpaceID']}'", f"applying {SPACE}")

    assert [op["UnitID"] for op in actions] == [a["UnitID"]]
    assert errors == ["unit b has no target"]
    assert a["LastAppliedRevisionNum"] == 1
    assert not b["LastAppliedRevisionNum"]


# ---- the confighub actuator ----------------------------------------------------------------


def test_actuator_confighub_is_accepted_with_confighub_as_the_authority(store, tmp_path):
    found, changed = store.set_space_gates(
        GatesUpdate(space=SPACE, actuator="confighub", by="platform-admin")
    )
    assert (changed, found.actuator) == (["actuator"], "confighub")
    assert store.get_space(SPACE).actuator == "confighub"
    # The same state store opened as the embedded authority refuses it, writing nothing.
    embedded = SqlStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        found, _ = embedded.set_space_gates(GatesUpdate(space=SPACE, actuator="kubernetes", by="x"))
        assert found.actuator == "kubernetes"
        with pytest.raises(BadInput, match=r"^--actuator: actuator confighub applies through"):
            embedded.set_space_gates(GatesUpdate(space=SPACE, actuator="confighub", by="x"))
        assert embedded.get_space(SPACE).actuator == "kubernetes"
    finally:
        embedded.close()
