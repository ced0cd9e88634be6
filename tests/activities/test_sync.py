"""activities/sync.py against a real bare remote: push, ensure_pr, close_prs.

The fixture app is published through the real publish workflow (so the space knows
its repo and overlay), then the authority changes outside Git and the sync
activities run in an activity context (``ActivityEnvironment``) with real git,
real ``kubectl kustomize`` and the real store.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import git as gitpython
import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

import activities.sync as sync_module
from activities.render import find_kubectl
from activities.sync import PushRejected, SyncActivities
from adapters.writeback import OverlayEditor
from authority import tables as t
from authority.sql import SqlStore
from domain.sync import (
    ClosePrsInput,
    EnsurePrInput,
    PullRequestSpec,
    SyncPushInput,
    SyncPushResult,
    SyncRow,
    SyncSettingsInput,
)
from tests.support import AuthoringRepo, authority_change, git, make_repo, set_patch_value
from tests.workflows.helpers import publish

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

SPACE = "messagewall-dev-east"
UNIT = "messagewall-dev-east"
BRANCH = f"tributary/sync/{SPACE}"
DEV_EAST = "infra/claims/overlays/dev-east/kustomization.yaml"
AUTHOR = "Sync Bot <sync-bot@example.com>"
TITLE = f"Sync {SPACE} from the authority"
SYNC_CONFIG = f"sync:\n  debounce: 5s\n  author: {AUTHOR}\n"


@pytest.fixture
async def repo(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, tmp_path: Path
) -> AuthoringRepo:
    """The message wall, with a sync author configured, published once."""
    repo = make_repo(tmp_path, "messagewall")
    repo.edit("tributary.yaml", lambda text: text + SYNC_CONFIG)
    repo.commit("configure the sync PR")
    result = await publish(env, worker, repo)
    assert all(s.written for s in result.spaces)
    return repo


@pytest.fixture
def acts(store: SqlStore, tmp_path: Path) -> SyncActivities:
    return SyncActivities(store, tmp_path / "sync-work", find_kubectl())


def run(fn: Any, inp: Any) -> Any:
    return ActivityEnvironment().run(fn, inp)


def remote_head(repo: AuthoringRepo, branch: str = BRANCH) -> str | None:
    out = git(repo.remote, "for-each-ref", "--format=%(objectname)", f"refs/heads/{branch}")
    return out or None


def main_head(repo: AuthoringRepo) -> str:
    return git(repo.remote, "rev-parse", "refs/heads/main")


def on_top_of_main(repo: AuthoringRepo) -> list[str]:
    """The commits of the sync branch that main does not have."""
    return git(repo.remote, "rev-list", f"main..{BRANCH}").split()


def branch_diff(repo: AuthoringRepo) -> str:
    return git(repo.remote, "diff", "main", BRANCH)


def message(repo: AuthoringRepo, commit: str) -> str:
    return git(repo.remote, "show", "-s", "--format=%B", commit)


def spec_for(pushed: SyncPushResult) -> PullRequestSpec:
    return PullRequestSpec(
        space=pushed.space,
        repo=pushed.repo,
        branch=pushed.branch,
        base=pushed.base,
        title=pushed.title,
        body=pushed.body,
        head_commit=pushed.head_commit,
    )


def memory_diff(before: int, after: int, *, index: bool = False) -> str:
    return (
        f"diff --git a/{DEV_EAST} b/{DEV_EAST}\n"
        + ("INDEX\n" if index else "")
        + f"--- a/{DEV_EAST}\n"
        f"+++ b/{DEV_EAST}\n"
        "@@ -29,7 +29,7 @@ patches:\n"
        "         value: messagewall-east\n"
        "       - op: replace\n"
        "         path: /spec/lambdaMemory\n"
        f"-        value: {before}\n"
        f"+        value: {after}\n"
        "       - op: replace\n"
        "         path: /spec/lambdaTimeout\n"
        "         value: 10"
    )


def _without_index(diff: str) -> str:
    return re.sub(r"(?m)^index [0-9a-f]{7,}\.\.[0-9a-f]{7,} 100644$", "INDEX", diff)


# ---- push ----------------------------------------------------------------------------------


async def test_heads_equal_to_the_render_are_in_sync(
    repo: AuthoringRepo, acts: SyncActivities
) -> None:
    result = run(acts.push, SyncPushInput(space=SPACE))
    assert result.action == "nothing-to-propose"
    assert (result.branch, result.base, result.base_commit) == (BRANCH, "main", repo.head)
    assert (result.rows, result.head_commit, result.diff) == ([], "", "")
    assert remote_head(repo) is None
    assert list((acts.work_root).iterdir()) == []  # the clone is cleaned up


async def test_settings_reads_the_configured_debounce(
    repo: AuthoringRepo, acts: SyncActivities
) -> None:
    assert run(acts.settings, SyncSettingsInput(space=SPACE)).debounce_seconds == 5
    with pytest.raises(ApplicationError) as err:
        run(acts.settings, SyncSettingsInput(space="nope"))
    assert (err.value.type, err.value.non_retryable) == ("NotFound", True)
    assert err.value.message == "space 'nope' does not exist in the authority"


async def test_push_is_idempotent_and_rebuilt_on_every_change(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities
) -> None:
    authority_change(store, SPACE, UNIT, "operator", {"incident": "INC-7"}, spec__lambdaMemory=512)

    first = run(acts.push, SyncPushInput(space=SPACE))
    assert first.action == "pushed"
    assert (first.branch, first.base, first.base_commit) == (BRANCH, "main", repo.head)
    assert first.rows == [
        SyncRow(
            unit=UNIT,
            path="spec.lambdaMemory",
            git=128,
            authority=512,
            revision=2,
            source="operator",
            incident="INC-7",
        )
    ]
    assert first.edits == [
        f"{UNIT} spec.lambdaMemory: {DEV_EAST}: JSON-patch op /spec/lambdaMemory"
    ]
    assert first.fallback == []
    assert first.title == TITLE
    assert (
        f"| {UNIT} | <code>spec.lambdaMemory</code> | <code>128</code> | <code>512</code> "
        "| 2 | operator | INC-7 |" in first.body.splitlines()
    )
    assert remote_head(repo) == first.head_commit
    assert on_top_of_main(repo) == [first.head_commit]
    assert git(repo.remote, "rev-parse", f"{BRANCH}^") == repo.head
    assert message(repo, first.head_commit) == (
        f"{TITLE}\n\n{UNIT} r2 (operator) [INC-7]\n\n  {UNIT} spec.lambdaMemory: 128 -> 512"
    )
    author = git(repo.remote, "show", "-s", "--format=%an <%ae>|%cn <%ce>", first.head_commit)
    assert author == f"{AUTHOR}|{AUTHOR}"
    assert _without_index(branch_diff(repo)) == memory_diff(128, 512, index=True)
    assert list(acts.work_root.iterdir()) == []

    # a retry with nothing new (a worker killed after the push): the same single commit
    again = run(acts.push, SyncPushInput(space=SPACE))
    assert again.action == "unchanged"
    assert again.head_commit == first.head_commit
    assert remote_head(repo) == first.head_commit
    assert on_top_of_main(repo) == [first.head_commit]

    # a new authority change: rebuilt on main, still one commit, force-pushed
    authority_change(store, SPACE, UNIT, "bulk", spec__lambdaTimeout=20)
    third = run(acts.push, SyncPushInput(space=SPACE))
    assert third.action == "pushed"
    assert third.head_commit != first.head_commit
    assert remote_head(repo) == third.head_commit
    assert on_top_of_main(repo) == [third.head_commit]
    assert git(repo.remote, "rev-parse", f"{BRANCH}^") == repo.head
    assert [(r.path, r.git, r.authority, r.revision, r.source) for r in third.rows] == [
        ("spec.lambdaMemory", 128, 512, 2, "operator"),
        ("spec.lambdaTimeout", 10, 20, 3, "bulk"),
    ]
    assert message(repo, third.head_commit) == (
        f"{TITLE}\n\n"
        f"{UNIT} r2 (operator) [INC-7]\n"
        f"{UNIT} r3 (bulk)\n\n"
        f"  {UNIT} spec.lambdaMemory: 128 -> 512\n"
        f"  {UNIT} spec.lambdaTimeout: 10 -> 20"
    )
    assert _without_index(branch_diff(repo)) == (
        f"diff --git a/{DEV_EAST} b/{DEV_EAST}\n"
        "INDEX\n"
        f"--- a/{DEV_EAST}\n"
        f"+++ b/{DEV_EAST}\n"
        "@@ -29,7 +29,7 @@ patches:\n"
        "         value: messagewall-east\n"
        "       - op: replace\n"
        "         path: /spec/lambdaMemory\n"
        "-        value: 128\n"
        "+        value: 512\n"
        "       - op: replace\n"
        "         path: /spec/lambdaTimeout\n"
        "-        value: 10\n"
        "+        value: 20"
    )


async def test_push_is_rebuilt_on_a_moved_main(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities
) -> None:
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=512)
    first = run(acts.push, SyncPushInput(space=SPACE))
    assert first.action == "pushed"
    old_main = repo.head

    repo.write("README.md", "The message wall.\n")
    new_main = repo.commit("docs: a readme")
    assert main_head(repo) == new_main != old_main

    rebuilt = run(acts.push, SyncPushInput(space=SPACE))
    assert rebuilt.action == "pushed"
    assert rebuilt.base_commit == new_main
    assert rebuilt.head_commit != first.head_commit
    assert on_top_of_main(repo) == [rebuilt.head_commit]
    assert git(repo.remote, "rev-parse", f"{BRANCH}^") == new_main
    assert git(repo.remote, "diff", "--name-only", "main", BRANCH) == DEV_EAST
    assert git(repo.remote, "show", f"{BRANCH}:README.md") == "The message wall."
    # and nothing new after that
    assert run(acts.push, SyncPushInput(space=SPACE)).action == "unchanged"


async def test_push_with_a_stale_lease_is_rejected(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities, tmp_path: Path
) -> None:
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=512)
    pushed = run(acts.push, SyncPushInput(space=SPACE))
    clone = gitpython.Repo.clone_from(repo.url, tmp_path / "intruder", branch="main")
    clone.git.config("user.name", "Someone Else")
    clone.git.config("user.email", "else@example.com")
    (tmp_path / "intruder" / "NOTE.md").write_text("someone else\n")
    clone.git.add("-A")
    clone.git.commit("-q", "-m", "someone else")

    # the lease names a commit the branch is not at: rejected, the branch untouched
    with pytest.raises(PushRejected, match=f"^{re.escape(BRANCH)} moved on the remote"):
        sync_module._push(clone, repo.url, BRANCH, main_head(repo))
    assert remote_head(repo) == pushed.head_commit
    # "the branch must not exist yet" while it does: rejected as well
    with pytest.raises(PushRejected):
        sync_module._push(clone, repo.url, BRANCH, None)
    assert remote_head(repo) == pushed.head_commit
    # the right lease goes through
    sync_module._push(clone, repo.url, BRANCH, pushed.head_commit)
    assert remote_head(repo) == clone.head.commit.hexsha


async def test_branch_moved_during_a_push_is_retryable_and_the_retry_wins(
    repo: AuthoringRepo,
    store: SqlStore,
    acts: SyncActivities,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Someone pushes the sync branch between our read of it and our push."""
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=512)
    first = run(acts.push, SyncPushInput(space=SPACE))
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=1024)

    intruder = tmp_path / "intruder"
    git(tmp_path, "clone", "-q", "--branch", "main", repo.url, str(intruder))
    git(intruder, "config", "user.name", "Someone Else")
    git(intruder, "config", "user.email", "else@example.com")
    git(intruder, "commit", "-q", "--allow-empty", "-m", "racing commit")
    racing = git(intruder, "rev-parse", "HEAD")
    real_commit = sync_module._commit

    def commit_then_race(*args: Any) -> str:
        out = real_commit(*args)
        git(intruder, "push", "-q", "--force", "origin", f"HEAD:refs/heads/{BRANCH}")
        return out

    monkeypatch.setattr(sync_module, "_commit", commit_then_race)
    with pytest.raises(PushRejected):  # not decided: Temporal retries it
        run(acts.push, SyncPushInput(space=SPACE))
    assert remote_head(repo) == racing != first.head_commit
    monkeypatch.undo()

    retried = run(acts.push, SyncPushInput(space=SPACE))
    assert retried.action == "pushed"
    assert on_top_of_main(repo) == [retried.head_commit]
    assert [(r.authority, r.revision) for r in retried.rows] == [(1024, 3)]


async def test_dry_run_shows_the_diff_and_pushes_nothing(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities
) -> None:
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=512)
    result = run(acts.push, SyncPushInput(space=SPACE, dry_run=True))
    assert result.action == "dry-run"
    assert result.head_commit == ""
    assert _without_index(result.diff) == memory_diff(128, 512, index=True)
    assert [(r.path, r.git, r.authority) for r in result.rows] == [("spec.lambdaMemory", 128, 512)]
    assert remote_head(repo) is None
    assert git(repo.remote, "for-each-ref", "--format=%(refname)") == "refs/heads/main"
    assert list(acts.work_root.iterdir()) == []


async def test_failed_verification_pushes_nothing_and_is_decided(
    repo: AuthoringRepo,
    store: SqlStore,
    acts: SyncActivities,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=512)
    monkeypatch.setattr(
        OverlayEditor, "verify", lambda self, heads, fallback: [f"{UNIT}: spec.lambdaMemory"]
    )
    with pytest.raises(ApplicationError) as err:
        run(acts.push, SyncPushInput(space=SPACE))
    assert err.value.type == "BadInput"
    assert err.value.non_retryable
    assert err.value.message == (
        "infra/claims/overlays/dev-east: the edited overlay does not render the authority's "
        f"claims ({UNIT}: spec.lambdaMemory); nothing was pushed"
    )
    assert remote_head(repo) is None
    assert list(acts.work_root.iterdir()) == []


async def test_push_of_a_space_without_a_repo_is_bad_input(
    store: SqlStore, acts: SyncActivities
) -> None:
    from domain.authority import SpaceSpec

    store.commit([], spaces=[SpaceSpec(name="bare", environment="dev")])
    with pytest.raises(ApplicationError) as err:
        run(acts.push, SyncPushInput(space="bare"))
    assert (err.value.type, err.value.non_retryable) == ("BadInput", True)
    assert err.value.message == "bare: the space has no authoring repo yet: publish it first"


# ---- the pull request ------------------------------------------------------------------------


def _pr_body(store: SqlStore, number: int) -> str:
    with store.engine.connect() as conn:
        return str(
            conn.execute(
                select(t.pull_requests.c.body).where(t.pull_requests.c.number == number)
            ).scalar_one()
        )


async def test_ensure_pr_opens_once_then_updates(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities
) -> None:
    authority_change(store, SPACE, UNIT, "operator", {"incident": "INC-7"}, spec__lambdaMemory=512)
    pushed = run(acts.push, SyncPushInput(space=SPACE))

    opened = run(acts.ensure_pr, EnsurePrInput(spec=spec_for(pushed)))
    assert opened.action == "opened"
    pr = opened.pr
    assert (pr.number, pr.state, pr.branch, pr.base) == (1, "open", BRANCH, "main")
    assert (pr.title, pr.head_commit) == (TITLE, pushed.head_commit)
    assert pr.url == f"{repo.url}#tributary-pr-1"
    assert _pr_body(store, 1) == pushed.body

    again = run(acts.ensure_pr, EnsurePrInput(spec=spec_for(pushed)))
    assert again.action == "unchanged"
    assert again.pr.number == 1
    prs = store.list_prs(SPACE)
    assert [(p.number, p.state, p.head_commit) for p in prs] == [(1, "open", pushed.head_commit)]

    authority_change(store, SPACE, UNIT, "bulk", spec__lambdaTimeout=20)
    repushed = run(acts.push, SyncPushInput(space=SPACE))
    updated = run(acts.ensure_pr, EnsurePrInput(spec=spec_for(repushed)))
    assert updated.action == "updated"
    assert (updated.pr.number, updated.pr.head_commit) == (1, repushed.head_commit)
    prs = store.list_prs(SPACE)
    assert [(p.number, p.state, p.head_commit) for p in prs] == [(1, "open", repushed.head_commit)]
    assert prs[0].created_at == pr.created_at
    assert _pr_body(store, 1) == repushed.body
    assert "| 3 | bulk |  |" in repushed.body


async def test_close_prs_marks_a_merged_branch_merged(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities
) -> None:
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=512)
    pushed = run(acts.push, SyncPushInput(space=SPACE))
    run(acts.ensure_pr, EnsurePrInput(spec=spec_for(pushed)))

    git(repo.work, "fetch", "-q", "origin")
    git(repo.work, "merge", "-q", "--no-edit", f"origin/{BRANCH}")
    git(repo.work, "push", "-q", "origin", "main")

    synced = run(acts.push, SyncPushInput(space=SPACE))
    assert synced.action == "nothing-to-propose"
    assert synced.base_commit == main_head(repo)
    closed = run(
        acts.close_prs,
        ClosePrsInput(space=SPACE, base_commit=synced.base_commit, repo=synced.repo),
    )
    assert closed.closed == [1]
    assert [(p.number, p.state) for p in store.list_prs(SPACE)] == [(1, "merged")]
    # only open PRs are closed: a second call closes nothing
    again = run(
        acts.close_prs,
        ClosePrsInput(space=SPACE, base_commit=synced.base_commit, repo=synced.repo),
    )
    assert again.closed == []
    assert [(p.number, p.state) for p in store.list_prs(SPACE)] == [(1, "merged")]


async def test_close_prs_marks_a_branch_main_does_not_contain_closed(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities
) -> None:
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=512)
    pushed = run(acts.push, SyncPushInput(space=SPACE))
    run(acts.ensure_pr, EnsurePrInput(spec=spec_for(pushed)))

    # a developer makes the same change by hand on main, in their own words: Git
    # renders the authority, but neither the PR's commit nor its content reached main
    repo.edit(
        DEV_EAST,
        lambda text: set_patch_value(text, "/spec/lambdaMemory", "512") + "# by hand\n",
    )
    repo.commit("bump memory by hand")

    synced = run(acts.push, SyncPushInput(space=SPACE))
    assert synced.action == "nothing-to-propose"
    # Without close_unmerged (what a run that pushes does first) an unmerged PR stays open.
    kept = run(
        acts.close_prs,
        ClosePrsInput(space=SPACE, base_commit=synced.base_commit, repo=synced.repo),
    )
    assert kept.closed == []
    closed = run(
        acts.close_prs,
        ClosePrsInput(
            space=SPACE, base_commit=synced.base_commit, repo=synced.repo, close_unmerged=True
        ),
    )
    assert closed.closed == [1]
    assert [(p.number, p.state) for p in store.list_prs(SPACE)] == [(1, "closed")]

    # the next change after that opens a new pull request
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=1024)
    pushed = run(acts.push, SyncPushInput(space=SPACE))
    assert pushed.action == "pushed"
    assert on_top_of_main(repo) == [pushed.head_commit]
    reopened = run(acts.ensure_pr, EnsurePrInput(spec=spec_for(pushed)))
    assert (reopened.action, reopened.pr.number) == ("opened", 2)
    assert [(p.number, p.state) for p in store.list_prs(SPACE)] == [(2, "open"), (1, "closed")]


async def test_close_prs_keeps_the_pr_body(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities
) -> None:
    """Marking a PR merged changes its state, not its description (the field table)."""
    authority_change(store, SPACE, UNIT, "operator", {"incident": "INC-7"}, spec__lambdaMemory=512)
    pushed = run(acts.push, SyncPushInput(space=SPACE))
    run(acts.ensure_pr, EnsurePrInput(spec=spec_for(pushed)))
    assert _pr_body(store, 1) == pushed.body

    git(repo.work, "fetch", "-q", "origin")
    git(repo.work, "merge", "-q", "--no-edit", f"origin/{BRANCH}")
    git(repo.work, "push", "-q", "origin", "main")
    run(acts.close_prs, ClosePrsInput(space=SPACE, base_commit=main_head(repo), repo=repo.url))

    assert [(p.number, p.state) for p in store.list_prs(SPACE)] == [(1, "merged")]
    assert _pr_body(store, 1) == pushed.body


async def test_a_change_after_the_pr_was_merged_opens_a_new_pr(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities
) -> None:
    """The developer merged PR #1; before any in-sync run the authority changes again.
    PR #1 is done (merged), so the new proposal is a new PR, not an update of #1."""
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=512)
    first = run(acts.push, SyncPushInput(space=SPACE))
    run(acts.ensure_pr, EnsurePrInput(spec=spec_for(first)))
    git(repo.work, "fetch", "-q", "origin")
    git(repo.work, "merge", "-q", "--no-edit", f"origin/{BRANCH}")
    git(repo.work, "push", "-q", "origin", "main")

    authority_change(store, SPACE, UNIT, "operator", spec__lambdaTimeout=20)
    second = run(acts.push, SyncPushInput(space=SPACE))
    assert second.action == "pushed"
    assert second.base_commit == first.head_commit  # main is the merged branch
    assert [r.path for r in second.rows] == ["spec.lambdaTimeout"]
    # What SyncPRWorkflow does between the push and the PR: merged PRs are done.
    done = run(
        acts.close_prs,
        ClosePrsInput(space=SPACE, base_commit=second.base_commit, repo=second.repo),
    )
    assert done.closed == [1]
    ensured = run(acts.ensure_pr, EnsurePrInput(spec=spec_for(second)))
    assert (ensured.action, ensured.pr.number) == ("opened", 2)
    assert [(p.number, p.state) for p in store.list_prs(SPACE)] == [(2, "open"), (1, "merged")]


# ---- merged, whatever the merge method (local forge, real bare remote) -------------------------


def merge_into_main(repo: AuthoringRepo, method: str) -> None:
    """What a developer (or a forge's merge button) does with the sync branch."""
    git(repo.work, "fetch", "-q", "origin")
    if method == "merge":
        git(repo.work, "merge", "-q", "--no-ff", "--no-edit", f"origin/{BRANCH}")
    elif method == "squash":
        git(repo.work, "merge", "-q", "--squash", f"origin/{BRANCH}")
        git(repo.work, "commit", "-q", "-m", "Sync (#1)")
    else:  # rebase: main moved on meanwhile, the branch's commit is replayed on top
        repo.write("NOTES.md", "unrelated\n")
        repo.commit("an unrelated change on main")
        git(repo.work, "cherry-pick", f"origin/{BRANCH}")
    git(repo.work, "push", "-q", "origin", "main")


@pytest.mark.parametrize("method", ["merge", "squash", "rebase"])
async def test_close_prs_marks_merged_whatever_the_merge_method(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities, method: str
) -> None:
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=512)
    pushed = run(acts.push, SyncPushInput(space=SPACE))
    run(acts.ensure_pr, EnsurePrInput(spec=spec_for(pushed)))
    merge_into_main(repo, method)
    ancestors = git(repo.remote, "rev-list", "main").split()
    is_ancestor = pushed.head_commit in ancestors
    assert is_ancestor == (method == "merge")  # squash and rebase leave no ancestry

    synced = run(acts.push, SyncPushInput(space=SPACE))
    assert synced.action == "nothing-to-propose"
    done = run(
        acts.close_prs,
        ClosePrsInput(
            space=SPACE, base_commit=synced.base_commit, repo=synced.repo, close_unmerged=True
        ),
    )
    assert done.closed == [1]
    assert [(p.number, p.state) for p in store.list_prs(SPACE)] == [(1, "merged")]


@pytest.mark.parametrize("method", ["squash", "rebase"])
async def test_a_change_after_a_squash_or_rebase_merge_opens_a_new_pr(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities, method: str
) -> None:
    """The branch is force-pushed with the next change before any in-sync run: the
    merged PR's commit is no longer on any branch, and still it is found merged."""
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=512)
    first = run(acts.push, SyncPushInput(space=SPACE))
    run(acts.ensure_pr, EnsurePrInput(spec=spec_for(first)))
    merge_into_main(repo, method)

    authority_change(store, SPACE, UNIT, "operator", spec__lambdaTimeout=20)
    second = run(acts.push, SyncPushInput(space=SPACE))
    assert second.action == "pushed"
    assert [r.path for r in second.rows] == ["spec.lambdaTimeout"]
    assert remote_head(repo) == second.head_commit
    done = run(
        acts.close_prs,
        ClosePrsInput(space=SPACE, base_commit=second.base_commit, repo=second.repo),
    )
    assert done.closed == [1]
    ensured = run(acts.ensure_pr, EnsurePrInput(spec=spec_for(second)))
    assert (ensured.action, ensured.pr.number) == ("opened", 2)
    assert [(p.number, p.state) for p in store.list_prs(SPACE)] == [(2, "open"), (1, "merged")]


async def test_an_unmerged_pr_stays_open_while_there_is_more_to_propose(
    repo: AuthoringRepo, store: SqlStore, acts: SyncActivities
) -> None:
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaMemory=512)
    first = run(acts.push, SyncPushInput(space=SPACE))
    run(acts.ensure_pr, EnsurePrInput(spec=spec_for(first)))
    authority_change(store, SPACE, UNIT, "operator", spec__lambdaTimeout=20)
    second = run(acts.push, SyncPushInput(space=SPACE))
    done = run(
        acts.close_prs,
        ClosePrsInput(space=SPACE, base_commit=second.base_commit, repo=second.repo),
    )
    assert done.closed == []
    updated = run(acts.ensure_pr, EnsurePrInput(spec=spec_for(second)))
    assert (updated.action, updated.pr.number) == ("updated", 1)
