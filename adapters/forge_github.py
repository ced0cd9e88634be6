"""The `github` forge: open or update the sync PR through GitHub's REST API (httpx).

Synchronous on purpose: it runs inside a sync Temporal activity. The token comes
from the worker's environment (``GITHUB_TOKEN``) and is only ever placed in the
``Authorization`` header of requests to the configured API origin; it never
reaches an exception, a log line, a repr or a return value.

Errors follow the domain's rule: what GitHub decided (bad credentials, no such
repo, a validation failure, a permission refusal) raises a ``TributaryError``
subclass, which the activity turns into a non-retryable failure; what passes
(5xx, a dropped connection) raises ``GitHubUnavailable``, a plain exception that
Temporal retries with backoff. A rate limit raises ``GitHubBusy``, whose ``delay()``
the activity hands to Temporal as ``next_retry_delay`` (GitHub's ``retry-after``
or ``x-ratelimit-reset``, at least a minute for a secondary limit without either).
A 422 ``head: invalid`` right after a push is asked again for ``head_wait``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from domain.errors import BadInput, NotFound, Rejected
from domain.repos import redact
from domain.sync import PrState, PullRequest, PullRequestSpec, SyncAction

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = "tributary"
#: listing stops after this many pages of ``PER_PAGE`` pull requests
MAX_PAGES = 10
PER_PAGE = 100
#: GitHub refuses a pull request body of 65,536 characters or more
MAX_BODY = 65_536
#: how long a freshly pushed head may be "invalid" to GitHub before that is final
HEAD_WAIT = timedelta(seconds=60)
#: a secondary rate limit without headers waits at least this long (GitHub's docs)
SECONDARY_WAIT = timedelta(seconds=60)
#: no rate limit wait is longer than this (a primary limit resets within the hour)
MAX_WAIT = timedelta(hours=1)
_DEFAULT_PORTS = {"http": 80, "https": 443}

log = logging.getLogger(__name__)

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_PATH = re.compile(rf"^/?(?P<owner>{_NAME})/(?P<name>{_NAME})/?$")
_SCP = re.compile(rf"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>{_NAME}/{_NAME}(?:\.git)?/?)$")


# ---- errors -----------------------------------------------------------------------------


class ForgeRejected(Rejected):
    """GitHub refused the request for good: credentials, permissions, validation."""

    def __init__(self, message: str, *, status: int, head_invalid: bool = False) -> None:
        super().__init__(message)
        self.status = status
        #: 422 ``{"field": "head", "code": "invalid"}``: GitHub does not know the branch
        self.head_invalid = head_invalid


class GitHubUnavailable(RuntimeError):
    """A passing failure (5xx, transport, an unreadable answer): retried by Temporal."""


class GitHubBusy(GitHubUnavailable):
    """Rate limited. ``retry_after`` is the number of seconds GitHub asked us to wait."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, reset_at: datetime | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reset_at = reset_at

    def delay(self, attempt: int = 1, *, now: datetime | None = None) -> timedelta:
        """How long to wait before the next attempt, as GitHub's documentation asks.

        ``retry-after`` when given; else until ``x-ratelimit-reset``; else (a secondary
        limit without headers) at least a minute, doubling with each ``attempt``.
        Never less than a second, never more than an hour.
        """
        clock = now or datetime.now(UTC)
        if self.retry_after is not None and self.reset_at is None:
            wait = timedelta(seconds=self.retry_after)
        elif self.reset_at is not None:
            until = self.reset_at - clock + timedelta(seconds=1)
            asked = timedelta(seconds=self.retry_after or 0)
            wait = max(until, asked)
        else:
            wait = SECONDARY_WAIT * (2 ** max(0, min(attempt - 1, 6)))
        return min(max(wait, timedelta(seconds=1)), MAX_WAIT)


# ---- repository URLs --------------------------------------------------------------------


def parse_repo(url: str, *, hosts: tuple[str, ...] = ("github.com",)) -> tuple[str, str]:
    """``(owner, name)`` of a GitHub repository URL.

    Accepts ``https://github.com/o/r(.git)``, ``git@github.com:o/r.git`` and
    ``ssh://git@github.com/o/r``; ``hosts`` widens the accepted hosts (GitHub
    Enterprise). Anything else is ``BadInput``.
    """
    text = url.strip()
    wanted = {h.lower() for h in hosts}
    host: str | None
    path: str
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("https", "http", "ssh", "git+ssh"):
            raise _not_github(url, hosts)
        host, path = parts.hostname, parts.path
        if parts.query or parts.fragment:
            raise _not_github(url, hosts)
    else:
        scp = _SCP.match(text)
        if not scp:
            raise _not_github(url, hosts)
        host, path = scp["host"], scp["path"]
    match = _PATH.match(path)
    if not host or host.lower() not in wanted or not match:
        raise _not_github(url, hosts)
    owner, name = match["owner"], match["name"]
    name = name.removesuffix(".git")
    if not name or name in (".", ".."):
        raise _not_github(url, hosts)
    return owner, name


def _not_github(url: str, hosts: tuple[str, ...]) -> BadInput:
    where = " or ".join(hosts)
    hint = (
        ""
        if hosts == ("github.com",)
        else f" (GITHUB_API_URL names a GitHub Enterprise server, which serves {where})"
    )
    return BadInput(
        f"{redact(url)!r} is not a GitHub repository URL on {where}{hint} "
        "(expected https://HOST/OWNER/REPO, git@HOST:OWNER/REPO.git or ssh://git@HOST/OWNER/REPO)",
        field="repo",
    )


def _web_hosts(api_url: str) -> tuple[str, ...]:
    """Hosts whose repo URLs this API serves: github.com, or the Enterprise host only.

    GitHub Enterprise Server answers at ``https://HOST/api/v3`` for repositories on
    ``HOST``; GHE.com at ``https://api.SUB.ghe.com`` for ``SUB.ghe.com``. A repository
    on github.com is not reachable through an Enterprise API: it is refused up front.
    """
    host = (urlsplit(api_url).hostname or "").lower()
    if host in ("api.github.com", "github.com", ""):
        return ("github.com",)
    return tuple(dict.fromkeys((host.removeprefix("api."), host)))


def check_api_url(base: str) -> str:
    """``GITHUB_API_URL`` as a base URL: https, plain http only on loopback (the tests'
    fake) since the token goes with every request; no credentials in it."""
    url = base.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(
            f"{redact(base)!r} is not an http(s) URL of a GitHub API", field="GITHUB_API_URL"
        )
    if parts.username or parts.password:
        raise BadInput(
            "GITHUB_API_URL must not hold credentials (the token goes in GITHUB_TOKEN)",
            field="GITHUB_API_URL",
        )
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise BadInput(
            f"{redact(base)!r} must use https (plain http only on loopback): the token "
            "goes with every request",
            field="GITHUB_API_URL",
        )
    return url


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of ``url``, the default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port


# ---- the client -------------------------------------------------------------------------


class GitHubForge:
    """Find, open and update the sync pull request of a branch."""

    def __init__(
        self,
        api_url: str | None = None,
        token: str | None = None,
        *,
        client: httpx.Client | None = None,
        timeout: float = 30.0,
        head_wait: timedelta = HEAD_WAIT,
        sleep: Callable[[float], None] = time.sleep,
        heartbeat: Callable[[str], None] | None = None,
    ) -> None:
        self.api_url = check_api_url(api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL)
        self._origin = _origin(self.api_url)
        self._hosts = _web_hosts(self.api_url)
        self._head_wait = head_wait
        self._sleep = sleep
        self._heartbeat = heartbeat or (lambda _: None)
        #: what a caller should know but that did not fail the call (a page cap hit)
        self.warnings: list[str] = []
        self._labels: dict[int, list[Any]] = {}
        raw = token if token is not None else os.environ.get("GITHUB_TOKEN")
        self.__token = (raw or "").strip() or None
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=True)

    def __repr__(self) -> str:
        token = "set" if self.__token else "not set"
        return f"GitHubForge(api_url={self.api_url!r}, token={token})"

    # ---- public ---------------------------------------------------------------------

    def ensure_pr(self, spec: PullRequestSpec) -> tuple[PullRequest, SyncAction]:
        """Open the PR of ``spec.branch`` or bring its title and body up to date.

        Labels are a separate step (``ensure_labels``): the caller records the PR
        first, so a labelling failure never loses a PR that exists.
        """
        owner, name = parse_repo(spec.repo, hosts=self._hosts)
        repo = f"{owner}/{name}"
        spec = spec.model_copy(update={"body": cap_body(spec.body)})
        action: SyncAction = "unchanged"
        data = self._open_pull(owner, name, spec.branch, spec.base)
        if data is None:
            data = self._create_pull(owner, name, spec)
            action = "opened"
        if data is None:  # someone opened it between our look and our create
            data = self._open_pull(owner, name, spec.branch, spec.base)
            action = "unchanged"
            if data is None:
                raise GitHubUnavailable(
                    f"GitHub says a pull request from {owner}:{spec.branch} already exists "
                    f"on {repo} but does not list it yet; will look again"
                )
        pr = _to_pr(spec.space, data, repo)
        if action != "opened" and (_text(data.get("title")), _text(data.get("body"))) != (
            spec.title,
            spec.body,
        ):
            data = self._object(
                "PATCH",
                f"/repos/{owner}/{name}/pulls/{pr.number}",
                repo=repo,
                op=f"updating pull request #{pr.number}",
                json={"title": spec.title, "body": spec.body},
            )
            pr, action = _to_pr(spec.space, data, repo), "updated"
        self._labels[pr.number] = data.get("labels") or []
        return pr, action

    def ensure_labels(self, spec: PullRequestSpec, pr: PullRequest) -> None:
        """Add the labels of ``spec`` that the PR lacks (names compare case-insensitively,
        as GitHub's do); nothing is sent when all are there."""
        owner, name = parse_repo(spec.repo, hosts=self._hosts)
        repo = f"{owner}/{name}"
        data = self._labels.get(pr.number)
        if data is None:  # not seen by ensure_pr: ask
            data = self._array(
                "GET",
                f"/repos/{owner}/{name}/issues/{pr.number}/labels",
                repo=repo,
                op=f"reading the labels of pull request #{pr.number}",
                json=None,
            )
        present = {str(lbl.get("name")).casefold() for lbl in data if isinstance(lbl, dict)}
        missing: dict[str, str] = {}
        for label in spec.labels:
            if label.casefold() not in present:
                missing.setdefault(label.casefold(), label)
        if missing:
            # GitHub answers with every label the issue now has
            self._labels[pr.number] = self._array(
                "POST",
                f"/repos/{owner}/{name}/issues/{pr.number}/labels",
                repo=repo,
                op=f"labelling pull request #{pr.number}",
                json={"labels": list(missing.values())},
            )

    def pr_state(self, repo_url: str, number: int) -> PrState:
        """What GitHub says of pull request ``number``: merged (``merged_at`` is set,
        whatever the merge method: merge commit, squash or rebase), closed or open."""
        owner, name = parse_repo(repo_url, hosts=self._hosts)
        data = self._object(
            "GET",
            f"/repos/{owner}/{name}/pulls/{number}",
            repo=f"{owner}/{name}",
            op=f"reading pull request #{number}",
            json=None,
        )
        return _state(data, f"{owner}/{name}")

    def merged_state(self, pr: PullRequest, *, repo: str, base_commit: str) -> PrState:
        """GitHub knows: ``base_commit`` (the local forge's evidence) is not needed.

        A recorded PR GitHub does not have (deleted with its repository's history, or a
        record of the local forge) is already closed; so is a number GitHub gives to
        another branch's PR, which is not ours to close."""
        owner, name = parse_repo(repo, hosts=self._hosts)
        try:
            data = self._object(
                "GET",
                f"/repos/{owner}/{name}/pulls/{pr.number}",
                repo=f"{owner}/{name}",
                op=f"reading pull request #{pr.number}",
                json=None,
            )
        except NotFound:
            self._gone(pr, owner, name, "GitHub has no such pull request")
            return "closed"
        head = str((data.get("head") or {}).get("ref") or "")
        if pr.branch and head != pr.branch:
            self._gone(pr, owner, name, f"GitHub's #{pr.number} is from {head!r}")
            return "closed"
        return _state(data, f"{owner}/{name}")

    def close_pr(self, pr: PullRequest, *, repo: str) -> None:
        """Close the pull request without merging it (one GitHub no longer has is closed)."""
        owner, name = parse_repo(repo, hosts=self._hosts)
        try:
            self._object(
                "PATCH",
                f"/repos/{owner}/{name}/pulls/{pr.number}",
                repo=f"{owner}/{name}",
                op=f"closing pull request #{pr.number}",
                json={"state": "closed"},
            )
        except NotFound:
            self._gone(pr, owner, name, "GitHub has no such pull request")

    def _gone(self, pr: PullRequest, owner: str, name: str, why: str) -> None:
        """Record-only PR: warn, once GitHub shows the repository (a 404 there too means
        a wrong repository or a token that cannot see it: raised, not hidden)."""
        self._object(
            "GET",
            f"/repos/{owner}/{name}",
            repo=f"{owner}/{name}",
            op=f"reading the repository for pull request #{pr.number}",
            json=None,
        )
        self._warn(
            f"pull request #{pr.number} ({pr.branch}) recorded for {pr.space} is not on "
            f"{owner}/{name}: {why}; recorded as closed"
        )

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> GitHubForge:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- pull requests --------------------------------------------------------------

    def _open_pull(self, owner: str, name: str, branch: str, base: str) -> dict[str, Any] | None:
        for data in self._pulls(owner, name, branch, base, state="open"):
            return data
        return None

    def _create_pull(self, owner: str, name: str, spec: PullRequestSpec) -> dict[str, Any] | None:
        """The created PR, or None when GitHub says one already exists for the head.

        Right after a push GitHub may not know the branch yet and answers 422
        ``{"field": "head", "code": "invalid"}``: that is asked again, with a growing
        pause, for up to ``head_wait``; after that it is final.
        """
        repo = f"{owner}/{name}"
        waited = 0.0
        pause = 1.0
        while True:
            try:
                return self._object(
                    "POST",
                    f"/repos/{owner}/{name}/pulls",
                    repo=repo,
                    op=f"opening a pull request from {spec.branch} into {spec.base}",
                    json={
                        "title": spec.title,
                        "head": spec.branch,
                        "base": spec.base,
                        "body": spec.body,
                        "maintainer_can_modify": False,
                    },
                )
            except ForgeRejected as e:
                if e.status == 422 and "already exists" in e.message.lower():
                    return None
                budget = self._head_wait.total_seconds() - waited
                if not e.head_invalid or budget <= 0:
                    if e.head_invalid:
                        raise ForgeRejected(
                            f"{e.message} (GitHub still did not know the pushed branch "
                            f"{spec.branch} after {round(waited)} s)",
                            status=e.status,
                        ) from None
                    raise
                step = min(pause, budget)
                self._heartbeat(
                    f"GitHub does not know {spec.branch} yet; asking again in {step:g} s"
                )
                self._sleep(step)
                waited += step
                pause = min(pause * 2, 10.0)

    def _pulls(
        self, owner: str, name: str, branch: str, base: str, *, state: str
    ) -> Iterator[dict[str, Any]]:
        """PRs whose head is ``owner:branch`` into ``base``, page by page (newest first)."""
        repo = f"{owner}/{name}"
        op = f"listing pull requests from {branch} into {base}"
        label = f"{owner}:{branch}".lower()
        url: str | None = f"{self.api_url}/repos/{owner}/{name}/pulls"
        params: dict[str, str | int] | None = {
            "head": f"{owner}:{branch}",
            "base": base,
            "state": state,
            "sort": "created",
            "direction": "desc",
            "per_page": PER_PAGE,
        }
        for _ in range(MAX_PAGES):
            if url is None:
                return
            response = self._send("GET", url, repo=repo, op=op, params=params)
            page = _body(response, repo, op)
            if not isinstance(page, list):
                raise _unreadable(repo, op)
            for item in page:
                if not isinstance(item, dict):
                    raise _unreadable(repo, op)
                head = item.get("head") or {}
                if head.get("ref") != branch:
                    continue
                if head.get("label") and str(head["label"]).lower() != label:
                    continue  # a fork's branch of the same name
                yield item
            url, params = self._next_page(response, repo), None
        if url is not None:
            self._warn(
                f"stopped listing pull requests from {branch} into {base} on {repo} after "
                f"{MAX_PAGES} pages of {PER_PAGE}; older ones were not looked at"
            )

    def _next_page(self, response: httpx.Response, repo: str) -> str | None:
        """The ``rel="next"`` link, only when it points back at the API we trust
        (``https://h/…`` and ``https://h:443/…`` are the same origin)."""
        nxt = response.links.get("next", {}).get("url")
        if not nxt:
            return None
        if _origin(nxt) != self._origin:
            # never send the token to another origin
            self._warn(
                f"GitHub's next page for {repo} is on another origin "
                f"({_origin(nxt)[1]}); pagination stopped there"
            )
            return None
        return nxt

    def _warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)

    # ---- HTTP -----------------------------------------------------------------------

    def _object(self, method: str, path: str, *, repo: str, op: str, json: Any) -> dict[str, Any]:
        data = self._answer(method, path, repo=repo, op=op, json=json)
        if not isinstance(data, dict):
            raise _unreadable(repo, op)
        return data

    def _array(self, method: str, path: str, *, repo: str, op: str, json: Any) -> list[Any]:
        data = self._answer(method, path, repo=repo, op=op, json=json)
        if not isinstance(data, list):
            raise _unreadable(repo, op)
        return data

    def _answer(self, method: str, path: str, *, repo: str, op: str, json: Any) -> Any:
        response = self._send(method, f"{self.api_url}{path}", repo=repo, op=op, json=json)
        return _body(response, repo, op)

    def _send(
        self,
        method: str,
        url: str,
        *,
        repo: str,
        op: str,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        if not self.__token:
            raise BadInput(
                "GITHUB_TOKEN is not set in the worker's environment; the github forge "
                f"needs a token that can open pull requests on {repo} (while {op})",
                field="GITHUB_TOKEN",
            )
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
            "Authorization": f"Bearer {self.__token}",
        }
        try:
            response = self._client.request(method, url, params=params, json=json, headers=headers)
        except httpx.TransportError as e:
            # ``from None``: the httpx error holds the request, and the request the token
            raise GitHubUnavailable(
                self._scrub(f"GitHub unreachable while {op} on {repo}: {type(e).__name__}: {e}")
            ) from None
        if response.is_success:
            return response
        raise self._failure(response, repo, op)

    def _failure(self, response: httpx.Response, repo: str, op: str) -> Exception:
        status = response.status_code
        message = self._scrub(_github_message(response))
        busy = _rate_limited(response, message)
        if busy is not None:
            retry_after, reset_at = busy
            when = _when(retry_after, reset_at)
            return GitHubBusy(
                f"GitHub rate limit hit while {op} on {repo} ({status}: {message}); {when}",
                retry_after=retry_after,
                reset_at=reset_at,
            )
        if status >= 500:
            return GitHubUnavailable(
                f"GitHub answered {status} while {op} on {repo}: {message}; will retry"
            )
        if status == 401:
            return ForgeRejected(
                f"GitHub rejected the credentials (GITHUB_TOKEN) for {repo}: {message} "
                f"(while {op})",
                status=status,
            )
        if status == 404:
            return NotFound(f"{repo} not found on GitHub, or the token cannot see it (while {op})")
        if status == 403:
            return ForgeRejected(
                f"GitHub refused {op} on {repo}: {message}; the token (GITHUB_TOKEN) needs "
                "read and write access to pull requests and issues of this repository",
                status=status,
            )
        if status == 422:
            return ForgeRejected(
                f"GitHub refused {op} on {repo}: {message}",
                status=status,
                head_invalid=_head_invalid(response),
            )
        return ForgeRejected(
            f"GitHub answered {status} while {op} on {repo}: {message}", status=status
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self.__token, "***") if self.__token else text


# ---- helpers ----------------------------------------------------------------------------


def _body(response: httpx.Response, repo: str, op: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise _unreadable(repo, op) from None


def _unreadable(repo: str, op: str) -> GitHubUnavailable:
    return GitHubUnavailable(f"GitHub sent an unreadable answer while {op} on {repo}")


def _github_message(response: httpx.Response) -> str:
    """GitHub's ``message`` plus each ``errors[]`` entry, or the start of the body."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] or response.reason_phrase or f"HTTP {response.status_code}"
    if not isinstance(data, dict):
        return str(data)[:200]
    message = str(data.get("message") or response.reason_phrase or f"HTTP {response.status_code}")
    details: list[str] = []
    for err in data.get("errors") or []:
        if isinstance(err, dict):
            text = str(err.get("message") or "").strip()
            where = ".".join(str(err[k]) for k in ("resource", "field") if err.get(k))
            code = str(err.get("code") or "").strip()
            if text:
                details.append(f"{text} ({code})" if code else text)
            elif where or code:
                details.append(f"{where}: {code}" if where else code)
        elif err:
            details.append(str(err))
    return f"{message}: {'; '.join(details)}" if details else message


def _head_invalid(response: httpx.Response) -> bool:
    try:
        data = response.json()
    except ValueError:
        return False
    errors = data.get("errors") if isinstance(data, dict) else None
    return any(
        isinstance(err, dict) and err.get("field") == "head" and err.get("code") == "invalid"
        for err in errors or []
    )


def cap_body(body: str, limit: int = MAX_BODY) -> str:
    """``body`` cut below GitHub's limit, saying so (the sync PR body caps its own
    table first; this is the last line of defence)."""
    if len(body) < limit:
        return body
    note = "\n\n*(description cut: GitHub accepts fewer than 65,536 characters)*\n"
    return body[: limit - 1 - len(note)] + note


def _rate_limited(
    response: httpx.Response, message: str
) -> tuple[float | None, datetime | None] | None:
    """``(retry_after, reset_at)`` when the answer is a rate limit, else None.

    GitHub sends ``x-ratelimit-reset`` on every answer; it is the time to wait for
    only when ``x-ratelimit-remaining`` is 0 (the primary limit). A secondary limit
    says so in its message and may carry ``retry-after``.
    """
    status = response.status_code
    if status not in (403, 429):
        return None
    headers = response.headers
    retry_after = _float(headers.get("retry-after"))
    exhausted = headers.get("x-ratelimit-remaining", "").strip() == "0"
    reset = _float(headers.get("x-ratelimit-reset")) if exhausted else None
    reset_at = datetime.fromtimestamp(reset, UTC) if reset is not None else None
    secondary = "rate limit" in message.lower()
    if status == 429 or exhausted or "retry-after" in headers or secondary:
        if retry_after is None and reset is not None:
            retry_after = max(0.0, reset - time.time())
        return retry_after, reset_at
    return None


def _when(retry_after: float | None, reset_at: datetime | None) -> str:
    if reset_at is not None:
        wait = f" (in {round(retry_after)} s)" if retry_after is not None else ""
        return f"the limit resets at {reset_at.strftime('%Y-%m-%dT%H:%M:%SZ')}{wait}; will retry"
    if retry_after is not None:
        return f"GitHub asks to retry after {round(retry_after)} s; will retry"
    return (
        "no reset time given: a secondary limit, retried after at least "
        f"{round(SECONDARY_WAIT.total_seconds())} s"
    )


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _state(data: Mapping[str, Any], repo: str) -> PrState:
    if data.get("merged_at"):
        return "merged"
    if data.get("state") == "closed":
        return "closed"
    if data.get("state") == "open":
        return "open"
    raise _unreadable(repo, "reading a pull request")


def _to_pr(space: str, data: Mapping[str, Any], repo: str) -> PullRequest:
    try:
        head, base = data["head"], data["base"]
        state = _state(data, repo)
        return PullRequest(
            space=space,
            number=int(data["number"]),
            url=str(data["html_url"]),
            state=state,
            branch=str(head["ref"]),
            base=str(base["ref"]),
            title=_text(data.get("title")),
            head_commit=_text(head.get("sha")),
            created_at=_time(data.get("created_at")),
            updated_at=_time(data.get("updated_at")),
        )
    except (KeyError, TypeError, ValueError):
        raise _unreadable(repo, "reading a pull request") from None


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None
