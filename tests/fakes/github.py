"""A loopback contract fake of the GitHub REST endpoints the `github` forge uses.

Built from GitHub's REST reference, API version 2022-11-28:

- ``GET  /repos/{owner}/{repo}/pulls`` (``head``, ``base``, ``state``, ``sort``,
  ``direction``, ``per_page``, ``page``; ``Link`` header with ``rel="next"``)
- ``POST /repos/{owner}/{repo}/pulls`` (201; 422 ``Validation Failed`` when a PR for
  the head exists, or ``{"resource": "PullRequest", "field": "head", "code":
  "invalid"}`` while the pushed branch is not known yet)
- ``GET|PATCH /repos/{owner}/{repo}/pulls/{number}`` (``merged_at`` set by any merge
  method: merge commit, squash, rebase; 404 ``Not Found`` for a number that is no pull
  request of the repository)
- ``GET /repos/{owner}/{repo}`` (the repository; 404 ``Not Found`` when it does not
  exist *or* the token cannot see it — GitHub does not tell the two apart)
- ``GET|POST /repos/{owner}/{repo}/issues/{number}/labels`` (label names match the
  repository's labels case-insensitively and keep the repository's spelling)

Every answer carries the rate-limit headers (``x-ratelimit-limit``, ``-remaining``,
``-used``, ``-reset``, ``-resource``); ``fail`` queues canned answers such as the
primary (``x-ratelimit-remaining: 0``) and secondary (message, maybe
``retry-after``) rate limits. Requests without ``Authorization: Bearer <token>``
get 401 ``Bad credentials``. ``prefix`` is ``""`` (api.github.com) or ``/api/v3``
(GitHub Enterprise Server).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DOCS = "https://docs.github.com/rest"
MERGE_METHODS = ("merge", "squash", "rebase")


@dataclass
class Canned:
    method: str
    path: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str


@dataclass
class FakeGitHub:
    token: str
    prefix: str = ""
    #: how many answers a page holds at most, whatever ``per_page`` asks
    page_size: int = 100
    #: ``host:port`` written into ``Link`` URLs (defaults to the server's own)
    link_netloc: str | None = None
    pulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    repo_labels: dict[str, list[str]] = field(default_factory=dict)
    #: branches GitHub does not know yet: creating a PR from one answers head-invalid
    #: this many more times
    unknown_heads: dict[str, int] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    canned: list[Canned] = field(default_factory=list)
    #: ``owner/repo`` names GitHub answers 404 for (missing, or the token cannot see them)
    hidden_repos: set[str] = field(default_factory=set)
    remaining: int = 5000

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body, headers = fake.answer(
                    self.command, self.path, raw, self.headers.get("authorization", "")
                )
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # ---- the test's handle ----------------------------------------------------------

    @property
    def netloc(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.netloc}{self.prefix}"

    @property
    def web_url(self) -> str:
        """Where repository URLs live (GitHub Enterprise Server: the same host)."""
        return f"http://{self.netloc}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and the ``path``
        regex (without the prefix) with this, before any real handling."""
        self.canned.append(
            Canned(method, re.compile(path), status, body, dict(headers or {}), times)
        )

    def add_pull(self, repo: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            return self._new_pull(repo, **fields)

    def merge(self, repo: str, number: int, method: str = "merge") -> None:
        """What the merge button does, for any of GitHub's three merge methods."""
        assert method in MERGE_METHODS
        with self._lock:
            pull = self._pull(repo, number)
            assert pull is not None
            now = _now()
            pull.update(state="closed", merged=True, merged_at=now, closed_at=now, updated_at=now)
            pull["merge_commit_sha"] = f"{method[:1]}{number:039d}"

    def close(self, repo: str, number: int) -> None:
        with self._lock:
            pull = self._pull(repo, number)
            assert pull is not None
            pull.update(state="closed", closed_at=_now(), updated_at=_now())

    def delete_pull(self, repo: str, number: int) -> None:
        """A pull request GitHub no longer has (GitHub Support deletes them on request;
        a repository re-created under the same name has none of the old ones)."""
        with self._lock:
            self.pulls[repo] = [p for p in self.pulls.get(repo, []) if p["number"] != number]

    def push(self, repo: str, branch: str, sha: str) -> None:
        """A push to ``branch``: open PRs from it show the new head."""
        with self._lock:
            for pull in self.pulls.get(repo, []):
                if pull["head"]["ref"] == branch and pull["state"] == "open":
                    pull["head"]["sha"] = sha

    def requests(self, method: str | None = None, path: str = "") -> list[Call]:
        return [
            c
            for c in self.calls
            if (method is None or c.method == method) and re.search(path, c.path)
        ]

    # ---- the server side ------------------------------------------------------------

    def answer(
        self, method: str, target: str, raw: bytes, authorization: str
    ) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, _error("Problems parsing JSON", 400), self._limits()
        with self._lock:
            self.calls.append(Call(method, parts.path, query, body, authorization))
            if not parts.path.startswith(self.prefix + "/"):
                return 404, _error("Not Found", 404), self._limits()
            path = parts.path[len(self.prefix) :]
            for canned in self.canned:
                if canned.times > 0 and canned.method == method and canned.path.search(path):
                    canned.times -= 1
                    return canned.status, canned.body, canned.headers
            if authorization != f"Bearer {self.token}":
                return 401, _error("Bad credentials", 401), self._limits()
            self.remaining -= 1
            status, answer, headers = self._route(method, path, query, body)
            return status, answer, {**self._limits(), **headers}

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        m = re.match(r"/repos/([^/]+)/([^/]+)(?:/|$)", path)
        if m and f"{m[1]}/{m[2]}" in self.hidden_repos:
            return 404, _error("Not Found", 404), {}
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)", path)
        if m and method == "GET":
            return 200, _repository(m[1], m[2], self.api_url), {}
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)/pulls", path)
        if m:
            repo = f"{m[1]}/{m[2]}"
            if method == "GET":
                return self._list(repo, path, query)
            if method == "POST":
                return self._create(repo, body)
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)/pulls/(\d+)", path)
        if m:
            repo, number = f"{m[1]}/{m[2]}", int(m[3])
            pull = self._pull(repo, number)
            if pull is None:
                return 404, _error("Not Found", 404), {}
            if method == "GET":
                return 200, pull, {}
            if method == "PATCH":
                for key in ("title", "body", "state"):
                    if key in body:
                        pull[key] = body[key]
                if body.get("state") == "closed" and not pull["merged_at"]:
                    pull["closed_at"] = _now()
                pull["updated_at"] = _now()
                return 200, pull, {}
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)/issues/(\d+)/labels", path)
        if m:
            repo, number = f"{m[1]}/{m[2]}", int(m[3])
            pull = self._pull(repo, number)
            if pull is None:
                return 404, _error("Not Found", 404), {}
            if method == "POST":
                known = self.repo_labels.setdefault(repo, [])
                for name in body["labels"]:
                    spelled = next((k for k in known if k.lower() == name.lower()), None)
                    if spelled is None:
                        known.append(name)
                        spelled = name
                    if all(lbl["name"] != spelled for lbl in pull["labels"]):
                        pull["labels"].append(_label(repo, spelled, len(known)))
            if method in ("GET", "POST"):
                return 200, pull["labels"], {}
        return 404, _error("Not Found", 404), {}

    def _list(self, repo: str, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        found = list(self.pulls.get(repo, []))
        state = query.get("state", "open")
        if state != "all":
            found = [p for p in found if p["state"] == state]
        if "head" in query:
            found = [p for p in found if p["head"]["label"] == query["head"]]
        if "base" in query:
            found = [p for p in found if p["base"]["ref"] == query["base"]]
        found.sort(key=lambda p: p["number"], reverse=query.get("direction", "desc") == "desc")
        size = min(int(query.get("per_page", 30)), self.page_size)
        page = int(query.get("page", 1))
        chunk = found[(page - 1) * size : page * size]
        headers: dict[str, str] = {}
        if page * size < len(found):
            rest = {**query, "page": str(page + 1)}
            link = f"http://{self.link_netloc or self.netloc}{self.prefix}{path}?" + "&".join(
                f"{k}={v}" for k, v in rest.items()
            )
            headers["link"] = f'<{link}>; rel="next"'
        return 200, chunk, headers

    def _create(self, repo: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        owner = repo.split("/")[0]
        head, base = body.get("head", ""), body.get("base", "")
        label = head if ":" in head else f"{owner}:{head}"
        if self.unknown_heads.get(head, 0) > 0:
            self.unknown_heads[head] -= 1
            return (
                422,
                _error(
                    "Validation Failed",
                    422,
                    errors=[{"resource": "PullRequest", "field": "head", "code": "invalid"}],
                ),
                {},
            )
        for pull in self.pulls.get(repo, []):
            if pull["state"] == "open" and pull["head"]["label"] == label:
                return (
                    422,
                    _error(
                        "Validation Failed",
                        422,
                        errors=[
                            {
                                "resource": "PullRequest",
                                "code": "custom",
                                "message": f"A pull request already exists for {label}.",
                            }
                        ],
                    ),
                    {},
                )
        pull = self._new_pull(repo, title=body["title"], body=body.get("body"), ref=head, base=base)
        return 201, pull, {"location": pull["url"]}

    def _new_pull(
        self,
        repo: str,
        *,
        title: str,
        body: str | None = None,
        ref: str,
        base: str = "main",
        sha: str = "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        state: str = "open",
        labels: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        owner = repo.split("/")[0]
        pulls = self.pulls.setdefault(repo, [])
        number = max((p["number"] for p in pulls), default=1346) + 1
        now = _now()
        api = f"http://{self.netloc}{self.prefix}/repos/{repo}"
        web = f"http://{self.netloc}/{repo}"
        pull: dict[str, Any] = {
            "url": f"{api}/pulls/{number}",
            "id": number,
            "node_id": "MDExOlB1bGxSZXF1ZXN0MQ==",
            "html_url": f"{web}/pull/{number}",
            "issue_url": f"{api}/issues/{number}",
            "number": number,
            "state": state,
            "locked": False,
            "title": title,
            "user": _user("tributary-bot"),
            "body": body or None,  # GitHub answers null for an empty body
            "labels": [],
            "created_at": now,
            "updated_at": now,
            "closed_at": None,
            "merged_at": None,
            "merged": False,
            "merge_commit_sha": None,
            "head": {"label": f"{owner}:{ref}", "ref": ref, "sha": sha, "user": _user(owner)},
            "base": {
                "label": f"{owner}:{base}",
                "ref": base,
                "sha": "9" * 40,
                "user": _user(owner),
            },
            "draft": False,
        }
        known = self.repo_labels.setdefault(repo, [])
        for lbl in labels:
            if lbl not in known:
                known.append(lbl)
            pull["labels"].append(_label(repo, lbl, len(known)))
        pulls.append(pull)
        return pull

    def _pull(self, repo: str, number: int) -> dict[str, Any] | None:
        return next((p for p in self.pulls.get(repo, []) if p["number"] == number), None)

    def _limits(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(max(self.remaining, 0)),
            "x-ratelimit-used": str(5000 - max(self.remaining, 0)),
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-resource": "core",
        }


# ---- documented answers -----------------------------------------------------------------


def primary_limit(reset_in: float) -> tuple[int, Any, dict[str, str]]:
    """403 of an exhausted primary rate limit: wait until ``x-ratelimit-reset``."""
    return (
        403,
        _error("API rate limit exceeded for user ID 1.", 403),
        {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": str(int(time.time() + reset_in)),
            "x-ratelimit-resource": "core",
        },
    )


def secondary_limit(retry_after: int | None = None) -> tuple[int, Any, dict[str, str]]:
    """403 of a secondary rate limit, with ``retry-after`` or without any hint
    (``x-ratelimit-remaining`` is not 0: the primary limit is fine)."""
    headers = {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "4990",
        "x-ratelimit-used": "10",
        "x-ratelimit-reset": str(int(time.time()) + 3000),
        "x-ratelimit-resource": "core",
    }
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return (
        403,
        _error(
            "You have exceeded a secondary rate limit. Please wait a few minutes before "
            "you try again. If you reach out to GitHub Support for help, please include "
            "the request ID 1234:5678:9ABC.",
            403,
        ),
        headers,
    )


def _error(message: str, status: int, **extra: Any) -> dict[str, Any]:
    return {"message": message, **extra, "documentation_url": DOCS, "status": str(status)}


def _repository(owner: str, name: str, api: str) -> dict[str, Any]:
    """The fields of "Get a repository" (full-repository) that a client may read."""
    return {
        "id": abs(hash((owner, name))) % 10**9,
        "name": name,
        "full_name": f"{owner}/{name}",
        "owner": _user(owner),
        "private": True,
        "default_branch": "main",
        "url": f"{api}/repos/{owner}/{name}",
        "permissions": {"admin": False, "push": True, "pull": True},
    }


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "id": 1, "type": "Organization", "site_admin": False}


def _label(repo: str, name: str, ident: int) -> dict[str, Any]:
    return {
        "id": ident,
        "node_id": "MDU6TGFiZWwyMDgwNDU5NDY=",
        "url": f"https://api.github.com/repos/{repo}/labels/{name}",
        "name": name,
        "description": None,
        "color": "f29513",
        "default": False,
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
