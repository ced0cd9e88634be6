"""Sync PR activities: write the authority back into the authoring repo and push a branch.

The branch ``tributary/sync/<space>`` is rebuilt on top of the current default
branch every time, so it always proposes exactly "make Git render what the
authority holds" — one commit, force-pushed with a lease. A retried activity finds
its own push (same base, same tree) and pushes nothing; a push rejected because the
remote moved raises, and the retry starts over on the new base.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import git
from temporalio import activity

from activities._errors import decided
from activities.forge import forge_for
from activities.writeback import OverlayEditor, value_at
from authority.protocol import AuthorityStore
from domain import metrics
from domain.diff import diff, json_equal
from domain.errors import BadInput, NotFound
from domain.markdown import cell, code, one_line
from domain.messages import (
    ClosePrsInput,
    ClosePrsResult,
    EnsurePrInput,
    EnsurePrResult,
    SyncPushInput,
    SyncPushResult,
    SyncRow,
    SyncSettingsInput,
    SyncSettingsResult,
)
from domain.repos import redact
from domain.sync import sync_branch

_AUTHOR = re.compile(r"^(?P<name>[^<>]+?) <(?P<email>[^<>]+)>$")


class PushRejected(RuntimeError):
    """The remote branch moved under us; retrying starts over on the new base."""


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
    def ensure_pr(self, inp: EnsurePrInput) -> EnsurePrResult:
        forge = forge_for(self.store)
        try:
            pr, action = forge.ensure_pr(inp.spec)
        finally:
            forge.close()
        # GitHub may report the head a moment late after a force-push; we know it.
        pr = pr.model_copy(update={"head_commit": inp.spec.head_commit})
        self.store.record_pr(pr, repo=inp.spec.repo, body=inp.spec.body)
        return EnsurePrResult(pr=pr, action=action)

    @activity.defn(name="sync.close_prs")
    @decided
    def close_prs(self, inp: ClosePrsInput) -> ClosePrsResult:
        """Open sync PRs whose branch reached the default branch are merged; when Git
        already renders the authority (``close_unmerged``) the others are closed too."""
        closed = []
        for pr in self.store.list_prs(inp.space):
            if pr.state != "open":
                continue
            merged = _is_ancestor(inp.repo, pr.head_commit, inp.base_commit, self.work_root)
            if not merged and not inp.close_unmerged:
                continue
            state = "merged" if merged else "closed"
            self.store.record_pr(pr.model_copy(update={"state": state}), repo=inp.repo, body=None)
            closed.append(pr.number)
            if merged:
                metrics.count(
                    activity.metric_meter(),
                    metrics.SYNC_PRS,
                    {"space": inp.space, "action": "merged"},
                )
        return ClosePrsResult(closed=closed)

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


def _is_ancestor(url: str, commit: str, base_commit: str, work_root: Path) -> bool:
    if not commit:
        return False
    work = Path(tempfile.mkdtemp(prefix="merged-", dir=work_root))
    try:
        repo = git.Repo.init(work, bare=True)
        repo.git.fetch("--quiet", "--", url, "+refs/heads/*:refs/heads/*")
        try:
            repo.git.merge_base("--is-ancestor", commit, base_commit)
        except git.GitCommandError:
            return False
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


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


def _body(space: str, rows: list[SyncRow], fallback: list[str], edits: list[str]) -> str:
    # Values come from live objects and operators: cell() and code() keep their
    # Markdown and HTML as text, so no value can split the table or hide the body.
    ui = os.environ.get("TRIBUTARY_UI_URL", "").rstrip("/")
    out = [
        f"The authority's claims for **{cell(space)}** changed outside Git. This pull "
        "request edits the overlay so that rendering it gives those claims again; once "
        "merged, the next `tributary publish` is a no-op.",
        "",
        "| unit | path | Git value | authority value | revision | source | incident |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {cell(r.unit)} | <code>{cell(r.path)}</code> "
            f"| {code(r.git)} | {code(r.authority)} "
            f"| {r.revision} | {cell(r.source)} | {cell(r.incident)} |"
        )
    if fallback:
        out += [
            "",
            "These units could not be expressed in the overlay; they are written to "
            f"<code>tributary-sync/{cell(space)}/</code> for you to fold in by hand: "
            + ", ".join(f"<code>{cell(u)}</code>" for u in fallback),
        ]
    if edits:
        out += ["", "<details><summary>Edits</summary>", ""]
        out.extend(f"- {cell(e)}" for e in sorted(set(edits)))
        out += ["", "</details>"]
    if ui:
        out += [
            "",
            f"[Workflows of {cell(space)} in the Temporal Web UI]"
            f"({ui}/namespaces/default/workflows?query=TributarySpace%3D%22{quote(space)}%22)",
        ]
    return "\n".join(out) + "\n"
