"""Sync PR activities: write the authority back into the authoring repo and push a branch.

The branch ``tributary/sync/<space>`` is rebuilt on top of the current default
branch every time, so it always proposes exactly "make Git render what the
authority holds" — one commit, force-pushed with a lease. A retried activity finds
its own push (same base, same tree) and pushes nothing; a push rejected because the
remote moved raises, and the retry starts over on the new base.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import git
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._errors import decided
from adapters.forge import forge_for
from adapters.forge_github import GitHubBusy
from adapters.writeback import OverlayEditor, value_at
from authority.protocol import AuthorityStore
from domain import metrics
from domain.diff import diff, json_equal
from domain.errors import BadInput, NotFound, TributaryError
from domain.markdown import cell, one_line
from domain.repos import redact
from domain.sync import (
    ClosePrsInput,
    ClosePrsResult,
    EnsurePrInput,
    EnsurePrResult,
    SyncPushInput,
    SyncPushResult,
    SyncRow,
    SyncSettingsInput,
    SyncSettingsResult,
    sync_branch,
)

_AUTHOR = re.compile(r"^(?P<name>[^<>]+?) <(?P<email>[^<>]+)>$")


class PushRejected(RuntimeError):
    """The remote branch moved under us; retrying starts over on the new base."""


P = ParamSpec("P")
R = TypeVar("R")


def rate_limited(fn: Callable[P, R]) -> Callable[P, R]:
    """A GitHub rate limit becomes a retryable failure whose next attempt waits as
    long as GitHub asks (``retry-after``, ``x-ratelimit-reset``, at least a minute
    for a secondary limit without either), up to an hour. The wait is in the
    failure's message (the pending activity's last failure in the Web UI and
    ``temporal workflow describe``) and in the heartbeat details."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except GitHubBusy as e:
            attempt = activity.info().attempt if activity.in_activity() else 1
            delay = e.delay(attempt)
            until = datetime.now(UTC) + delay
            message = (
                f"{e}; attempt {attempt + 1} in {round(delay.total_seconds())} s "
                f"(at {until.strftime('%Y-%m-%dT%H:%M:%SZ')})"
            )
            if activity.in_activity():
                activity.heartbeat(message)
            raise ApplicationError(message, type="GitHubRateLimited", next_retry_delay=delay) from e

    return wrapper


class SyncActivities:
    def __init__(self, store: AuthorityStore, work_root: Path, kubectl: str) -> None:
        self.store = store
        self.work_root = work_root
        self.kubectl = kubectl
        work_root.mkdir(parents=True, exist_ok=True)

    @activity.defn(name="sync.settings")
    @decided
    def settings(self, inp: SyncSettingsInput) -> SyncSettingsResult:
        space = self.store.get_space(inp.space)
        if space is None:
            raise NotFound(f"space {inp.space!r} does not exist in the authority")
        return SyncSettingsResult(debounce_seconds=space.sync.debounce_seconds)

    @activity.defn(name="sync.push")
    @decided
    def push(self, inp: SyncPushInput) -> SyncPushResult:
        space = self.store.get_space(inp.space)
        if space is None:
            raise NotFound(f"space {inp.space!r} does not exist in the authority")
        if not space.repo or not space.overlay:
            raise BadInput("the space has no authoring repo yet: publish it first", obj=inp.space)
        heads = self._heads(inp.space)
        branch = sync_branch(inp.space)
        work = Path(tempfile.mkdtemp(prefix="sync-", dir=self.work_root))
        try:
            activity.heartbeat("cloning")
            base = space.sync.base or _default_branch(space.repo)
            repo = _clone(space.repo, base, work)
            base_commit = repo.head.commit.hexsha
            editor = OverlayEditor(work, space.overlay, self.kubectl)
            before = editor.render()
            result = SyncPushResult(
                action="nothing-to-propose",
                space=inp.space,
                repo=space.repo,
                branch=branch,
                base=base,
                base_commit=base_commit,
            )
            rows = self._rows(inp.space, before, heads)
            if not rows:
                return result
            activity.heartbeat("writing back")
            written = editor.write_back(inp.space, heads)
            problems = editor.verify(heads, written.fallback)
            if problems:
                raise BadInput(
                    "the edited overlay does not render the authority's claims "
                    f"({'; '.join(problems)}); nothing was pushed",
                    file=space.overlay,
                )
            title = space.sync.message.format(space=inp.space)
            body = _body(inp.space, rows, written.fallback, [e.where for e in written.edits])
            result = result.model_copy(
                update={
                    "rows": rows,
                    "fallback": written.fallback,
                    "edits": [f"{e.unit} {e.path}: {e.where}" for e in written.edits],
                    "title": title,
                    "body": body,
                }
            )
            repo.git.add("-A")
            if inp.dry_run:
                return result.model_copy(
                    update={"action": "dry-run", "diff": repo.git.diff("--cached")}
                )
            tree = repo.git.write_tree()
            remote_head = _remote_branch(repo, space.repo, branch)
            if remote_head is not None:
                remote_tree = repo.git.rev_parse(f"{remote_head}^{{tree}}")
                remote_parent = repo.git.rev_parse(f"{remote_head}^")
                if remote_tree == tree and remote_parent == base_commit:
                    return result.model_copy(
                        update={"action": "unchanged", "head_commit": remote_head}
                    )
            head = _commit(repo, space.sync.author, _message(title, rows, written.fallback))
            activity.heartbeat("pushing")
            _push(repo, space.repo, branch, remote_head)
            return result.model_copy(update={"action": "pushed", "head_commit": head})
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @activity.defn(name="sync.ensure_pr")
    @decided
    @rate_limited
    def ensure_pr(self, inp: EnsurePrInput) -> EnsurePrResult:
        """Open or update the PR, record it, then label it (a retry after a failed
        labelling finds the PR, records it again and labels what is missing)."""
        spec = inp.spec
        previous = {
            pr.number: pr for pr in self.store.list_prs(spec.space) if pr.branch == spec.branch
        }
        forge = forge_for(self.store, self.work_root, heartbeat=activity.heartbeat)
        try:
            pr, action = forge.ensure_pr(spec)
            # GitHub may report the head a moment late after a force-push; we know it.
            pr = pr.model_copy(update={"head_commit": spec.head_commit})
            before = previous.get(pr.number)
            # a new commit on the branch is an update, whatever the forge says
            if (
                action == "unchanged"
                and before is not None
                and before.state == "open"
                and before.head_commit != spec.head_commit
            ):
                action = "updated"
            self.store.record_pr(pr, repo=spec.repo, body=spec.body)
            try:
                forge.ensure_labels(spec, pr)
            except TributaryError as e:
                # refused for good (a token without issues access): the PR stands
                forge.warnings.append(f"pull request #{pr.number} left without labels: {e}")
            warnings = list(forge.warnings)
        finally:
            forge.close()
        return EnsurePrResult(pr=pr, action=action, warnings=warnings)

    @activity.defn(name="sync.close_prs")
    @decided
    @rate_limited
    def close_prs(self, inp: ClosePrsInput) -> ClosePrsResult:
        """Open sync PRs that were merged (by a merge commit, a squash or a rebase) are
        recorded merged, those closed on the forge closed; when Git already renders
        the authority (``close_unmerged``) the others are closed too."""
        closed = []
        forge = forge_for(self.store, self.work_root, heartbeat=activity.heartbeat)
        try:
            for pr in self.store.list_prs(inp.space):
                if pr.state != "open":
                    continue
                state = forge.merged_state(pr, repo=inp.repo, base_commit=inp.base_commit)
                if state == "open":
                    if not inp.close_unmerged:
                        continue
                    forge.close_pr(pr, repo=inp.repo)
                    state = "closed"
                self.store.record_pr(
                    pr.model_copy(update={"state": state}), repo=inp.repo, body=None
                )
                closed.append(pr.number)
                if state == "merged":
                    metrics.count(
                        activity.metric_meter(),
                        metrics.SYNC_PRS,
                        {"space": inp.space, "action": "merged"},
                    )
            warnings = list(forge.warnings)
        finally:
            forge.close()
        return ClosePrsResult(closed=closed, warnings=warnings)

    # ---- helpers -------------------------------------------------------------------------

    def _heads(self, space: str) -> dict[str, dict[str, Any]]:
        units = [u for u in self.store.list_units(space) if u.state == "active"]
        revisions = self.store.get_revisions(space, [(u.slug, u.head_revision) for u in units])
        return {r.unit: r.data for r in revisions}

    def _rows(
        self, space: str, rendered: dict[str, dict[str, Any]], heads: dict[str, dict[str, Any]]
    ) -> list[SyncRow]:
        rows: list[SyncRow] = []
        for unit_name, head in sorted(heads.items()):
            current = rendered.get(unit_name)
            if current is None or json_equal(current, head):
                continue
            unit = self.store.get_unit(space, unit_name)
            assert unit is not None
            history = self.store.list_revisions(space, unit_name)
            for change in diff(current, head):
                origin = _origin(history, change.path, head)
                rows.append(
                    SyncRow(
                        unit=unit_name,
                        path=change.path,
                        git=value_at(current, change.path),
                        authority=value_at(head, change.path),
                        revision=origin.number if origin else unit.head_revision,
                        source=origin.source if origin else "",
                        incident=(origin.tags.get("incident", "") if origin else ""),
                    )
                )
        return rows


def _origin(history: list[Any], path: str, head: dict[str, Any]) -> Any:
    """The revision that first set ``path`` to its current head value."""
    wanted = value_at(head, path)
    origin = None
    for rev in reversed(history):
        if json_equal(value_at(rev.data, path), wanted):
            origin = rev
        else:
            break
    return origin


# Every git call below puts "--" before the URL: it is the space's stored repo,
# and git must never read it as an option (issue 10, hole 2).
def _default_branch(url: str) -> str:
    try:
        out = str(git.cmd.Git().ls_remote("--symref", "--", url, "HEAD"))
    except git.GitCommandError as e:
        # As in _clone: the command line carries the URL, the failure goes to history.
        raise RuntimeError(f"cannot reach {redact(url)}: {redact(str(e.stderr))}") from None
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/"):
            return line.split("\t")[0].removeprefix("ref: refs/heads/")
    return "main"


def _clone(url: str, branch: str, work: Path) -> git.Repo:
    try:
        return git.Repo.clone_from(url, work, branch=branch, single_branch=True, depth=50)
    except git.GitCommandError as e:
        # The command line carries the URL; keep only git's redacted complaint.
        raise RuntimeError(
            f"cannot clone {redact(url)} ({branch}): {redact(str(e.stderr))}"
        ) from None


def _remote_branch(repo: git.Repo, url: str, branch: str) -> str | None:
    listed = str(repo.git.ls_remote("--", url, f"refs/heads/{branch}"))
    if not listed.strip():
        return None
    sha = listed.split()[0]
    repo.git.fetch("--quiet", "--depth=2", "--", url, f"refs/heads/{branch}")
    return sha


def _commit(repo: git.Repo, author: str, message: str) -> str:
    m = _AUTHOR.match(author)
    name, email = (m.group("name"), m.group("email")) if m else ("Tributary", "tributary@localhost")
    env = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    with repo.git.custom_environment(**env):
        repo.git.commit("--quiet", "--no-verify", "-m", message)
    return repo.head.commit.hexsha


def _push(repo: git.Repo, url: str, branch: str, expected: str | None) -> None:
    lease = f"--force-with-lease=refs/heads/{branch}:{expected or ''}"
    try:
        repo.git.push("--quiet", lease, "--", url, f"HEAD:refs/heads/{branch}")
    except git.GitCommandError as e:
        stderr = redact(str(e.stderr))
        if "stale info" in stderr or "rejected" in stderr or "fetch first" in stderr:
            raise PushRejected(
                f"{branch} moved on the remote; starting over on the new base"
            ) from None
        raise RuntimeError(f"push of {branch} to {redact(url)} failed: {stderr}") from None


def _show(value: Any) -> str:
    return "—" if value is None else json.dumps(value)


def _message(title: str, rows: list[SyncRow], fallback: list[str]) -> str:
    # Every value is made one line (one_line): a newline in an incident or a live
    # annotation key would otherwise start a trailer such as Co-authored-by.
    lines = [one_line(title), ""]
    seen: set[tuple[str, int]] = set()
    for row in rows:
        if (row.unit, row.revision) in seen:
            continue
        seen.add((row.unit, row.revision))
        incident = f" [{one_line(row.incident)}]" if row.incident else ""
        lines.append(f"{one_line(row.unit)} r{row.revision} ({one_line(row.source)}){incident}")
    lines.append("")
    lines.extend(
        f"  {one_line(r.unit)} {one_line(r.path)}: {_show(r.git)} -> {_show(r.authority)}"
        for r in rows
    )
    if fallback:
        lines += ["", "Could not be expressed in the overlay (see tributary-sync/):"]
        lines.extend(f"  {one_line(unit)}" for unit in fallback)
    return "\n".join(lines) + "\n"


#: the PR body stays below GitHub's 65,536 characters with room to spare
BODY_BUDGET = 60_000
#: a value longer than this (as JSON) is shortened in the PR table; the commit
#: message of the branch and ``tributary sync-pr SPACE --dry-run`` show it whole
VALUE_CHARS = 300


def _value(value: Any) -> str:
    text = "—" if value is None else json.dumps(value, ensure_ascii=False)
    if len(text) > VALUE_CHARS:
        text = text[:VALUE_CHARS] + "…"
    return f"<code>{cell(text)}</code>"


def _body(space: str, rows: list[SyncRow], fallback: list[str], edits: list[str]) -> str:
    # Values come from live objects and operators: cell() and code() keep their
    # Markdown and HTML as text, so no value can split the table or hide the body.
    # The body is capped (BODY_BUDGET): rows that do not fit are counted, not shown.
    ui = os.environ.get("TRIBUTARY_UI_URL", "").rstrip("/")
    head = [
        f"The authority's claims for **{cell(space)}** changed outside Git. This pull "
        "request edits the overlay so that rendering it gives those claims again; once "
        "merged, the next `tributary publish` is a no-op.",
        "",
        "| unit | path | Git value | authority value | revision | source | incident |",
        "|---|---|---|---|---|---|---|",
    ]
    table = [
        f"| {cell(r.unit)} | <code>{cell(r.path)}</code> "
        f"| {_value(r.git)} | {_value(r.authority)} "
        f"| {r.revision} | {cell(r.source)} | {cell(r.incident)} |"
        for r in rows
    ]
    fallback_lines: list[str] = []
    if fallback:
        fallback_lines = [
            "",
            "These units could not be expressed in the overlay; they are written to "
            f"<code>tributary-sync/{cell(space)}/</code> for you to fold in by hand: "
            + ", ".join(f"<code>{cell(u)}</code>" for u in fallback),
        ]
    ui_lines: list[str] = []
    if ui:
        ui_lines = [
            "",
            f"[Workflows of {cell(space)} in the Temporal Web UI]"
            f"({ui}/namespaces/default/workflows?query=TributarySpace%3D%22{quote(space)}%22)",
        ]
    details = [f"- {cell(e)}" for e in sorted(set(edits))]
    see_all = (
        "see them all in the commit message of this branch, with "
        f"<code>{cell(f'tributary sync-pr {space} --dry-run --json')}</code>, or per unit "
        f"with <code>{cell(f'tributary drift status {space}')}</code> and "
        f"<code>{cell(f'tributary revisions {space} UNIT')}</code>"
    )

    def size(lines: list[str]) -> int:
        return sum(len(line) + 1 for line in lines)

    if size(fallback_lines) > BODY_BUDGET // 4:
        fallback_lines = [
            "",
            f"{len(fallback)} units could not be expressed in the overlay; they are written "
            f"to <code>tributary-sync/{cell(space)}/</code> for you to fold in by hand.",
        ]
    # the table first; the notes, the fallback units and the link keep their room
    budget = BODY_BUDGET - size(head) - size(fallback_lines) - size(ui_lines) - 1_000
    shown = _fit(table, budget)
    out = head + table[:shown]
    if shown < len(table):
        out += [
            "",
            f"*{len(table) - shown} of {len(table)} rows were left out to keep this "
            f"description within GitHub's size limit; {see_all}.*",
        ]
    out += fallback_lines
    if details:
        room = BODY_BUDGET - size(out) - size(ui_lines) - 200
        fits = _fit(details, room)
        if fits:
            out += ["", "<details><summary>Edits</summary>", ""]
            out += details[:fits]
            if fits < len(details):
                out.append(f"- *{len(details) - fits} more edits left out*")
            out += ["", "</details>"]
    out += ui_lines
    return "\n".join(out) + "\n"


def _fit(lines: list[str], budget: int) -> int:
    """How many of ``lines`` (from the first) fit in ``budget`` characters."""
    used = 0
    for index, line in enumerate(lines):
        used += len(line) + 1
        if used > budget:
            return index
    return len(lines)
