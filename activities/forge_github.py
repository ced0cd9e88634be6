"""The `github` forge: open or update the sync PR through GitHub's REST API (httpx).

Synchronous on purpose: it runs inside a sync Temporal activity. The token comes
from the worker's environment (``GITHUB_TOKEN``) and is only ever placed in the
``Authorization`` header of requests to the configured API origin; it never
reaches an exception, a log line, a repr or a return value.

Errors follow the domain's rule: what GitHub decided (bad credentials, no such
repo, a validation failure, a permission refusal) raises a ``TributaryError``
subclass, which the activity turns into a non-retryable failure; what passes
(rate limits, 5xx, a dropped connection) raises ``GitHubUnavailable``, a plain
exception that Temporal retries with backoff.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal
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

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_PATH = re.compile(rf"^/?(?P<owner>{_NAME})/(?P<name>{_NAME})/?$")
_SCP = re.compile(rf"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>{_NAME}/{_NAME}(?:\.git)?/?)$")


# ---- errors -----------------------------------------------------------------------------


class ForgeRejected(Rejected):
    """GitHub refused the request for good: credentials, permissions, validation."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


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
    return BadInput(
        f"{redact(url)!r} is not a GitHub repository URL on {where} "
        "(expected https://HOST/OWNER/REPO, git@HOST:OWNER/REPO.git or ssh://git@HOST/OWNER/REPO)",
        field="repo",
    )


def _web_hosts(api_url: str) -> tuple[str, ...]:
    """Hosts whose repo URLs this API serves: github.com, or the Enterprise host."""
    host = (urlsplit(api_url).hostname or "").lower()
    if host in ("api.github.com", "github.com", ""):
        return ("github.com",)
    return tuple(dict.fromkeys(("github.com", host.removeprefix("api."), host)))


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
    ) -> None:
        base = api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL
        self.api_url = base.rstrip("/")
        origin = urlsplit(self.api_url)
        if origin.scheme not in ("http", "https") or not origin.hostname:
            raise BadInput(
                f"{redact(base)!r} is not an http(s) URL of a GitHub API", field="GITHUB_API_URL"
            )
        self._origin = (origin.scheme, origin.netloc.lower())
        self._hosts = _web_hosts(self.api_url)
        raw = token if token is not None else os.environ.get("GITHUB_TOKEN")
        self.__token = (raw or "").strip() or None
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=True)

    def __repr__(self) -> str:
        token = "set" if self.__token else "not set"
        return f"GitHubForge(api_url={self.api_url!r}, token={token})"

    # ---- public ---------------------------------------------------------------------

    def ensure_pr(self, spec: PullRequestSpec) -> tuple[PullRequest, SyncAction]:
        """Open the PR of ``spec.branch`` or bring its title, body and labels up to date."""
        owner, name = parse_repo(spec.repo, hosts=self._hosts)
        repo = f"{owner}/{name}"
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
        self._ensure_labels(owner, name, pr.number, data, spec.labels)
        return pr, action

    def find_pr(self, repo: str, branch: str, base: str, *, space: str = "") -> PullRequest | None:
        """The newest PR from ``branch`` into ``base``, open, closed or merged."""
        owner, name = parse_repo(repo, hosts=self._hosts)
        for data in self._pulls(owner, name, branch, base, state="all"):
            return _to_pr(space, data, f"{owner}/{name}")
        return None

    def list_prs(
        self,
        repo: str,
        branch: str,
        base: str,
        *,
        state: Literal["open", "closed", "all"] = "all",
        space: str = "",
    ) -> list[PullRequest]:
        """Every PR from ``branch`` into ``base`` in ``state``, newest first."""
        owner, name = parse_repo(repo, hosts=self._hosts)
        return [
            _to_pr(space, data, f"{owner}/{name}")
            for data in self._pulls(owner, name, branch, base, state=state)
        ]

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
        """The created PR, or None when GitHub says one already exists for the head."""
        repo = f"{owner}/{name}"
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
            raise

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
            url, params = self._next_page(response), None

    def _next_page(self, response: httpx.Response) -> str | None:
        """The ``rel="next"`` link, only when it points back at the API we trust."""
        nxt = response.links.get("next", {}).get("url")
        if not nxt:
            return None
        parts = urlsplit(nxt)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            return None  # never send the token to another origin
        return nxt

    def _ensure_labels(
        self,
        owner: str,
        name: str,
        number: int,
        data: Mapping[str, Any],
        wanted: list[str],
    ) -> None:
        present = {
            str(lbl.get("name")) for lbl in data.get("labels") or [] if isinstance(lbl, dict)
        }
        missing = [lbl for lbl in dict.fromkeys(wanted) if lbl not in present]
        if missing:
            self._send(
                "POST",
                f"{self.api_url}/repos/{owner}/{name}/issues/{number}/labels",
                repo=f"{owner}/{name}",
                op=f"labelling pull request #{number}",
                json={"labels": missing},
            )

    # ---- HTTP -----------------------------------------------------------------------

    def _object(self, method: str, path: str, *, repo: str, op: str, json: Any) -> dict[str, Any]:
        response = self._send(method, f"{self.api_url}{path}", repo=repo, op=op, json=json)
        data = _body(response, repo, op)
        if not isinstance(data, dict):
            raise _unreadable(repo, op)
        return data

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
            return ForgeRejected(f"GitHub refused {op} on {repo}: {message}", status=status)
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


def _rate_limited(
    response: httpx.Response, message: str
) -> tuple[float | None, datetime | None] | None:
    """``(retry_after, reset_at)`` when the answer is a rate limit, else None."""
    status = response.status_code
    if status not in (403, 429):
        return None
    headers = response.headers
    retry_after = _float(headers.get("retry-after"))
    reset = _float(headers.get("x-ratelimit-reset"))
    reset_at = datetime.fromtimestamp(reset, UTC) if reset is not None else None
    exhausted = headers.get("x-ratelimit-remaining", "").strip() == "0"
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
    return "no reset time given; will retry with backoff"


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _to_pr(space: str, data: Mapping[str, Any], repo: str) -> PullRequest:
    try:
        head, base = data["head"], data["base"]
        state: PrState
        if data.get("merged_at"):
            state = "merged"
        elif data["state"] == "closed":
            state = "closed"
        else:
            state = "open"
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
