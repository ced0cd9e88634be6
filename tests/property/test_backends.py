"""The embedded store and the ConfigHub client, driven side by side, must agree.

A differential test: hypothesis draws a sequence of what the arrows do to one unit
(publish, apply the head, capture a live edit, approve, roll back, bulk set) and runs
it against ``SqlStore`` (SQLite) and ``ConfigHubStore`` (over the contract fake of
ConfigHub's API). Revision numbers may differ (ConfigHub's head is always its newest
revision, so a kept head is restored above a capture), so the stores are compared by
what a user and the gates see: the head's and the live revision's data, the head's
source, the fields a capture marked in conflict, whether an approval or an apply is
refused, what each capture reports. A behaviour written twice, once per store, drifts
apart; this is the search for where it did (the capture's conflict mark once did).
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from authority.confighub import ConfigHubStore
from authority.confighub_api import ConfigHubApi
from authority.sql import SqlStore
from domain.authority import Approval, UnitChange
from domain.drift import capture_conflict, conflict_paths
from domain.errors import CaptureConflict
from tests.authority.test_store import space_spec
from tests.fakes.confighub import FakeConfigHub

PROFILE = os.environ.get("TRIBUTARY_HYPOTHESIS_PROFILE", "ci")
SETTINGS = settings(
    # CI: the same examples every run (a landing is not decided by the draw); the slow
    # profile searches anew.
    derandomize=PROFILE != "slow",
    max_examples=1000 if PROFILE == "slow" else 60,
    stateful_step_count=25 if PROFILE == "slow" else 16,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Every write changes something: a draw picks fields and how far to move each along its
# values, so pending changes and conflicting captures are common, not lucky.
VALUES: dict[str, list[Any]] = {
    "lambdaMemory": [128, 256, 512, 1024],
    "lambdaTimeout": [10, 30, 60],
    "region": ["us-east-1", "eu-west-1", "us-west-2"],
}
EDIT = st.lists(
    st.tuples(st.sampled_from(sorted(VALUES)), st.integers(1, 2)),
    min_size=1,
    max_size=2,
    unique_by=lambda e: e[0],
)
SLUG = "u"


def claim(memory: int = 128, timeout: int = 10, region: str = "us-east-1") -> dict[str, Any]:
    return {
        "apiVersion": "messagewall.demo/v1alpha1",
        "kind": "ServerlessEventAppClaim",
        "metadata": {"name": "messagewall-dev-east"},
        "spec": {"lambdaMemory": memory, "lambdaTimeout": timeout, "region": region},
    }


def edited(data: dict[str, Any], edit: list[tuple[str, int]]) -> dict[str, Any]:
    """``data`` with each named field moved ``step`` places along its values."""
    spec = dict(data["spec"])
    for field, step in edit:
        values = VALUES[field]
        spec[field] = values[(values.index(spec[field]) + step) % len(values)]
    return {**data, "spec": spec}


class Backends(RuleBasedStateMachine):
    stores: tuple[SqlStore, ConfigHubStore]  # bound by the test

    def __init__(self) -> None:
        super().__init__()
        self.space = f"s-{uuid.uuid4().hex[:10]}"  # one space per example, same stores

    def _change(self, store: Any, data: dict[str, Any], source: str) -> UnitChange:
        unit = store.get_unit(self.space, SLUG)
        return UnitChange(
            space=self.space,
            slug=SLUG,
            expected_version=unit.version if unit else None,
            data=data,
            description=source,
            source=source,
            author="proptest",
        )

    def _head(self, store: Any) -> Any:
        unit = store.get_unit(self.space, SLUG)
        return store.get_revision(self.space, SLUG, unit.head_revision)

    def _live(self, store: Any) -> Any:
        """The live revision (revision 1 runs from the start, so there always is one)."""
        unit = store.get_unit(self.space, SLUG)
        assert unit.live_revision is not None
        return store.get_revision(self.space, SLUG, unit.live_revision)

    def _same(self, answers: list[Any], what: str) -> Any:
        assert answers[0] == answers[1], (
            f"{what}: embedded {answers[0]!r}, ConfigHub {answers[1]!r}"
        )
        return answers[0]

    # ---- what the arrows do -----------------------------------------------------------

    @initialize(pending=st.none() | EDIT, edit=st.none() | EDIT)
    def published_and_live(
        self, pending: list[tuple[str, int]] | None, edit: list[tuple[str, int]] | None
    ) -> None:
        """Revision 1 runs; often a change already waits ahead of it, and what runs has
        often been edited already (the states where the stores' code differs most)."""
        for store in self.stores:
            store.commit(
                [self._change(store, claim(), "ci")],
                spaces=[space_spec(self.space)],
            )
            store.record_applied(self.space, SLUG, 1, live=True)
        if pending is not None:
            self.publish_or_set(pending, "ci")
        if edit is not None:
            self.capture_a_live_edit(edit)

    @rule(edit=EDIT, source=st.sampled_from(["ci", "bulk"]))
    def publish_or_set(self, edit: list[tuple[str, int]], source: str) -> None:
        """A new head: a commit's render, or a bulk ``set``, changing the head."""
        created = []
        for store in self.stores:
            data = edited(self._head(store).data, edit)
            created.append(store.commit([self._change(store, data, source)])[0].created)
        self._same(created, f"{source} writes a revision")

    @rule()
    def apply_head(self) -> None:
        """The apply gate: a head a capture conflicts with is refused, else it runs."""
        refused = []
        for store in self.stores:
            head = self._head(store)
            conflict = capture_conflict(self.space, SLUG, head.number, head.tags)
            refused.append(bool(conflict))
            if not conflict:
                store.record_applied(self.space, SLUG, head.number, live=True)
        self._same(refused, "the apply of the head is refused")

    @rule(edit=EDIT)
    def capture_a_live_edit(self, edit: list[tuple[str, int]]) -> None:
        """What runs changes (kubectl edit, AWS console) and the loop captures it."""
        reports = []
        for store in self.stores:
            unit = store.get_unit(self.space, SLUG)
            change = self._change(store, edited(self._live(store).data, edit), "drift-capture")
            written = store.capture(change, expected_live=unit.live_revision)
            reports.append(
                (
                    sorted(c.path for c in written.conflicts),
                    written.rebased_revision is not None,
                    written.pending_revision is not None,
                )
            )
        self._same(reports, "the capture's report (conflicts, re-based, pending)")

    @rule(who=st.sampled_from(["ana", "bo"]))
    def approve_head(self, who: str) -> None:
        refused = []
        for store in self.stores:
            head = self._head(store)
            try:
                store.record_approval(
                    self.space, SLUG, head.number, Approval(by=who, at=datetime.now(UTC))
                )
                refused.append(False)
            except CaptureConflict:
                refused.append(True)
        self._same(refused, "the approval of the head is refused")

    @rule(target_live=st.booleans())
    def rollback(self, target_live: bool) -> None:
        """To the head's own data (the operator keeps a marked head) or to what runs."""
        created = []
        for store in self.stores:
            data = (self._live(store) if target_live else self._head(store)).data
            created.append(store.commit([self._change(store, data, "rollback")])[0].created)
        self._same(created, "the rollback writes")

    @rule()
    def tag_the_live_revision(self) -> None:
        """An operator says the loop's last capture was break-glass (``drift capture
        --tag``, which relabels it)."""
        self._tag("live")

    @rule()
    def tag_the_head(self) -> None:
        self._tag("head")

    def _tag(self, which: str) -> None:
        answers = []
        marked = bool(conflict_paths(self._head(self.stores[0]).tags))
        event(f"tag the {which} revision" + (" (the head is marked)" if marked else ""))
        for store in self.stores:
            unit = store.get_unit(self.space, SLUG)
            number = unit.live_revision if which == "live" else unit.head_revision
            try:
                got = store.classify_revision(
                    self.space, SLUG, number, source="break-glass", tags={"incident": "INC-1"}
                )
                answers.append((got.source, got.tags.get("incident")))
            except Exception as e:  # the kind of refusal is compared
                answers.append((type(e).__name__, None))
        self._same(answers, f"tagging the {which} revision")

    # ---- what must agree after every step ------------------------------------------------

    @invariant()
    def they_agree(self) -> None:
        if self.stores[0].get_unit(self.space, SLUG) is None:
            return  # before the first step
        heads = [self._head(s) for s in self.stores]
        self._same([h.data for h in heads], "the head's data")
        self._same([h.source for h in heads], "the head's source")
        self._same([sorted(conflict_paths(h.tags)) for h in heads], "the head's conflict mark")
        lives = [self._live(s) for s in self.stores]
        self._same([r.data for r in lives], "what runs (live data)")
        self._same([r.source for r in lives], "the live revision's source")


@pytest.fixture
def stores(tmp_path: Path) -> Any:
    folder = tmp_path
    sql = SqlStore(f"sqlite:///{folder / 'authority.db'}")
    hub = FakeConfigHub().start()
    ch = ConfigHubStore(ConfigHubApi(hub.url, hub.token), SqlStore(f"sqlite:///{folder / 's.db'}"))
    try:
        yield sql, ch
    finally:
        ch.close()
        sql.close()
        hub.stop()


# Against a hang: 1 to 2 min at load average 5; the slow profile runs far past any limit.
@pytest.mark.timeout(0 if PROFILE == "slow" else 900)
def test_the_embedded_store_and_confighub_agree(stores: Any) -> None:
    machine = type("BackendsBound", (Backends,), {"stores": stores})
    run_state_machine_as_test(machine, settings=SETTINGS)
