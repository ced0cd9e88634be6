"""adapters/forge_github.py against GitHub's documented REST request/response shapes.

Bodies follow the REST reference for "List pull requests", "Create a pull request",
"Update a pull request" and "Add labels to an issue" (API version 2022-11-28);
error bodies follow GitHub's ``{"message", "errors", "documentation_url", "status"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import pytest
import respx
from temporalio.exceptions import ApplicationError

from activities._errors import decided
from activities.sync import rate_limited
from adapters import forge_github
from adapters.forge_github import (
    MAX_BODY,
    ForgeRejected,
    GitHubBusy,
    GitHubForge,
    GitHubUnavailable,
    _origin,
    _to_pr,
    _web_hosts,
    cap_body,
    parse_repo,
)
from domain.errors import BadInput, NotFound, TributaryError
from domain.sync import PR_LABELS, PullRequest, PullRequestSpec, sync_branch
from tests.fakes.github import FakeGitHub, primary_limit, secondary_limit

API = "https://api.github.com"
TOKEN = "ghp_SECRETtoken123"
OWNER, NAME = "octo-org", "messagewall"
REPO_URL = f"https://github.com/{OWNER}/{NAME}.git"
SPACE = "messagewall-prod-east"
BRANCH = sync_branch(SPACE)
PULLS = f"{API}/repos/{OWNER}/{NAME}/pulls"


# What these tests read back from GitHub; the sync needs only ensure_pr, pr_state and
# close_pr, so listing lives here, on the forge's own paging.
def list_prs(
    forge: GitHubForge,
    repo: str,
    branch: str,
    base: str,
    *,
    state: Literal["open", "closed", "all"] = "all",
    space: str = "",
) -> list[PullRequest]:
    """Every PR from ``branch`` into ``base`` in ``state``, newest first."""
    owner, name = parse_repo(repo, hosts=forge._hosts)
    return [
        _to_pr(space, data, f"{owner}/{name}")
        for data in forge._pulls(owner, name, branch, base, state=state)
    ]


def find_pr(
    forge: GitHubForge, repo: str, branch: str, base: str, *, space: str = ""
) -> PullRequest | None:
    """The newest PR from ``branch`` into ``base``, open, closed or merged."""
    owner, name = parse_repo(repo, hosts=forge._hosts)
    for data in forge._pulls(owner, name, branch, base, state="all"):
        return _to_pr(space, data, f"{owner}/{name}")
    return None


SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
TITLE = "Sync messagewall-prod-east from ConfigHub (2 units)"
BODY = "| unit | path | Git | authority |\n|---|---|---|---|\n| table | spec.ttl | 30 | 60 |\n"


# ---- GitHub-shaped bodies ---------------------------------------------------------------


def _user(login: str = OWNER) -> dict[str, Any]:
    return {
        "login": login,
        "id": 1,
        "node_id": "MDQ6VXNlcjE=",
        "avatar_url": "https://github.com/images/error/octocat_happy.gif",
        "html_url": f"https://github.com/{login}",
        "type": "Organization",
        "site_admin": False,
    }


def _repo() -> dict[str, Any]:
    return {
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": NAME,
        "full_name": f"{OWNER}/{NAME}",
        "owner": _user(),
        "private": True,
        "html_url": f"https://github.com/{OWNER}/{NAME}",
        "default_branch": "main",
    }


def _label(name: str, ident: int = 208045946) -> dict[str, Any]:
    return {
        "id": ident,
        "node_id": "MDU6TGFiZWwyMDgwNDU5NDY=",
        "url": f"{API}/repos/{OWNER}/{NAME}/labels/{name}",
        "name": name,
        "description": None,
        "color": "f29513",
        "default": False,
    }


def _pull(
    number: int = 1347,
    *,
    title: str = TITLE,
    body: str | None = BODY,
    state: str = "open",
    merged_at: str | None = None,
    labels: tuple[str, ...] = (),
    ref: str = BRANCH,
    head_owner: str = OWNER,
    sha: str = SHA,
    created_at: str = "2025-05-02T09:14:07Z",
    updated_at: str = "2025-05-02T09:20:41Z",
) -> dict[str, Any]:
    return {
        "url": f"{PULLS}/{number}",
        "id": 1,
        "node_id": "MDExOlB1bGxSZXF1ZXN0MQ==",
        "html_url": f"https://github.com/{OWNER}/{NAME}/pull/{number}",
        "diff_url": f"https://github.com/{OWNER}/{NAME}/pull/{number}.diff",
        "issue_url": f"{API}/repos/{OWNER}/{NAME}/issues/{number}",
        "number": number,
        "state": state,
        "locked": False,
        "title": title,
        "user": _user("tributary-bot"),
        "body": body,
        "labels": [_label(n, i) for i, n in enumerate(labels)],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": created_at,
        "updated_at": updated_at,
        "closed_at": merged_at if state == "closed" else None,
        "merged_at": merged_at,
        "merge_commit_sha": "e5bd3914e2e596debea16f433f57875b5b90bcd6",
        "assignees": [],
        "requested_reviewers": [],
        "head": {
            "label": f"{head_owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": _user(head_owner),
            "repo": _repo(),
        },
        "base": {
            "label": f"{OWNER}:main",
            "ref": "main",
            "sha": "9049f1265b7d61be4a8904a9a27120d2064dab3b",
            "user": _user(),
            "repo": _repo(),
        },
        "author_association": "NONE",
        "draft": False,
    }


def _error(message: str, status: int, **extra: Any) -> dict[str, Any]:
    return {
        "message": message,
        "documentation_url": "https://docs.github.com/rest/pulls/pulls",
        "status": str(status),
        **extra,
    }


def _spec(**changes: Any) -> PullRequestSpec:
    fields: dict[str, Any] = {
        "space": SPACE,
        "repo": REPO_URL,
        "branch": BRANCH,
        "base": "main",
        "title": TITLE,
        "body": BODY,
        "head_commit": SHA,
    }
    fields.update(changes)
    return PullRequestSpec(**fields)


def _sent(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def github() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def forge() -> Iterator[GitHubForge]:
    f = GitHubForge(API, TOKEN)
    yield f
    f.close()


# ---- parse_repo -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/octo-org/messagewall",
        "https://github.com/octo-org/messagewall.git",
        "https://github.com/octo-org/messagewall/",
        "http://github.com/octo-org/messagewall",
        "https://x-access-token:abc@github.com/octo-org/messagewall.git",
        "git@github.com:octo-org/messagewall.git",
        "git@github.com:octo-org/messagewall",
        "ssh://git@github.com/octo-org/messagewall",
        "ssh://git@github.com:22/octo-org/messagewall.git",
        "  https://GitHub.com/octo-org/messagewall.git\n",
    ],
)
def test_parse_repo_accepts_the_github_forms(url: str) -> None:
    assert parse_repo(url) == ("octo-org", "messagewall")


def test_parse_repo_keeps_dots_in_names() -> None:
    assert parse_repo("https://github.com/octo.org/message.wall.git") == (
        "octo.org",
        "message.wall",
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://gitlab.com/octo-org/messagewall.git",
        "git@bitbucket.org:octo-org/messagewall.git",
        "https://github.com/octo-org",
        "https://github.com/octo-org/messagewall/tree/main",
        "https://github.com/octo-org/messagewall?tab=readme",
        "file:///srv/git/messagewall.git",
        "/srv/git/messagewall.git",
        "messagewall",
    ],
)
def test_parse_repo_refuses_anything_else(url: str) -> None:
    with pytest.raises(BadInput, match="not a GitHub repository URL"):
        parse_repo(url)


def test_parse_repo_never_echoes_credentials() -> None:
    with pytest.raises(BadInput) as info:
        parse_repo(f"https://x-access-token:{TOKEN}@gitlab.com/octo-org/messagewall.git")
    assert TOKEN not in str(info.value)
    assert "gitlab.com/octo-org/messagewall.git" in str(info.value)


def test_enterprise_hosts_follow_the_api_url() -> None:
    f = GitHubForge("https://ghe.example.com/api/v3", TOKEN)
    try:
        with respx.mock() as router:
            router.get("https://ghe.example.com/api/v3/repos/platform/infra/pulls").respond(
                200, json=[]
            )
            assert find_pr(f, "git@ghe.example.com:platform/infra.git", BRANCH, "main") is None
    finally:
        f.close()


# ---- ensure_pr ----------------------------------------------------------------------------


def test_opens_a_pull_request_when_none_is_open(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    listing = github.get(PULLS).respond(200, json=[])
    create = github.post(PULLS).respond(201, json=_pull(1347))
    labels = github.post(f"{API}/repos/{OWNER}/{NAME}/issues/1347/labels").respond(
        200, json=[_label(n, i) for i, n in enumerate(PR_LABELS)]
    )

    pr, action = forge.ensure_pr(_spec())
    assert not labels.called  # the caller records the PR first, then labels it
    forge.ensure_labels(_spec(), pr)

    assert action == "opened"
    assert pr.model_dump() == {
        "space": SPACE,
        "number": 1347,
        "url": f"https://github.com/{OWNER}/{NAME}/pull/1347",
        "state": "open",
        "branch": BRANCH,
        "base": "main",
        "title": TITLE,
        "head_commit": SHA,
        "created_at": datetime(2025, 5, 2, 9, 14, 7, tzinfo=UTC),
        "updated_at": datetime(2025, 5, 2, 9, 20, 41, tzinfo=UTC),
    }
    # the look-up: the open PR whose head is owner:branch into base
    params = listing.calls.last.request.url.params
    assert params["head"] == f"{OWNER}:{BRANCH}"
    assert params["base"] == "main"
    assert params["state"] == "open"
    # the create, exactly as documented
    assert create.call_count == 1
    assert _sent(create) == {
        "title": TITLE,
        "head": BRANCH,
        "base": "main",
        "body": BODY,
        "maintainer_can_modify": False,
    }
    # every request carries the same headers
    for route in (listing, create, labels):
        headers = route.calls.last.request.headers
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert headers["Accept"] == "application/vnd.github+json"
        assert headers["X-GitHub-Api-Version"] == "2022-11-28"
        assert headers["User-Agent"] == "tributary"
    # then the labels
    assert labels.call_count == 1
    assert _sent(labels) == {"labels": ["sync", "confighub", "automated"]}
    order = [c.request.method + " " + c.request.url.path for c in github.calls]
    assert order == [
        f"GET /repos/{OWNER}/{NAME}/pulls",
        f"POST /repos/{OWNER}/{NAME}/pulls",
        f"POST /repos/{OWNER}/{NAME}/issues/1347/labels",
    ]


def test_updates_title_and_body_when_they_differ(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    github.get(PULLS).respond(
        200, json=[_pull(7, title="Sync (1 unit)", body="old table", labels=PR_LABELS)]
    )
    patch = github.patch(f"{PULLS}/7").respond(
        200, json=_pull(7, labels=PR_LABELS, updated_at="2025-05-03T10:00:00Z")
    )
    create = github.post(PULLS)
    labels = github.post(f"{API}/repos/{OWNER}/{NAME}/issues/7/labels")

    pr, action = forge.ensure_pr(_spec())

    assert action == "updated"
    assert _sent(patch) == {"title": TITLE, "body": BODY}
    assert (pr.number, pr.title, pr.state) == (7, TITLE, "open")
    assert pr.updated_at == datetime(2025, 5, 3, 10, 0, tzinfo=UTC)
    assert not create.called
    assert not labels.called


def test_unchanged_when_title_body_and_labels_match(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    github.get(PULLS).respond(200, json=[_pull(7, labels=("needs-review", *PR_LABELS))])

    pr, action = forge.ensure_pr(_spec())

    assert action == "unchanged"
    assert pr.number == 7
    assert [c.request.method for c in github.calls] == ["GET"]  # no PATCH, no labels


def test_an_empty_body_reads_as_null(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(200, json=[_pull(7, body=None, labels=PR_LABELS)])
    _, action = forge.ensure_pr(_spec(body=""))
    assert action == "unchanged"
    assert len(github.calls) == 1


def test_adds_only_the_missing_labels(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(200, json=[_pull(7, labels=("sync", "needs-review"))])
    labels = github.post(f"{API}/repos/{OWNER}/{NAME}/issues/7/labels").respond(
        200, json=[_label(n) for n in ("sync", "needs-review", "confighub", "automated")]
    )

    pr, action = forge.ensure_pr(_spec())
    forge.ensure_labels(_spec(), pr)

    assert action == "unchanged"
    assert labels.call_count == 1
    assert _sent(labels) == {"labels": ["confighub", "automated"]}


def test_labels_come_from_the_spec(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(200, json=[_pull(7, labels=("sync",))])
    labels = github.post(f"{API}/repos/{OWNER}/{NAME}/issues/7/labels").respond(200, json=[])
    spec = _spec(labels=["sync", "prod", "prod", "Prod"])
    pr, _ = forge.ensure_pr(spec)
    forge.ensure_labels(spec, pr)
    assert _sent(labels) == {"labels": ["prod"]}


def test_a_pr_opened_by_someone_else_meanwhile_is_adopted(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    """A retried activity whose first attempt created the PR after our look-up."""
    listing = github.get(PULLS)
    listing.side_effect = [
        httpx.Response(200, json=[]),
        httpx.Response(200, json=[_pull(9, labels=PR_LABELS)]),
    ]
    github.post(PULLS).respond(
        422,
        json=_error(
            "Validation Failed",
            422,
            errors=[
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"A pull request already exists for {OWNER}:{BRANCH}.",
                }
            ],
        ),
    )

    pr, action = forge.ensure_pr(_spec())

    assert (pr.number, action) == (9, "unchanged")
    assert listing.call_count == 2


# ---- find_pr, listing, pagination ---------------------------------------------------------


def test_pagination_follows_the_link_header(github: respx.MockRouter, forge: GitHubForge) -> None:
    page2 = "https://api.github.com/repositories/1296269/pulls?state=all&page=2"
    route = github.get(
        url__regex=r"https://api\.github\.com/(repos/octo-org/messagewall|repositories/1296269)/pulls"
    )
    route.side_effect = [
        httpx.Response(
            200,
            json=[_pull(30, state="open"), _pull(20, state="closed")],
            headers={"Link": f'<{page2}>; rel="next", <{page2}>; rel="last"'},
        ),
        httpx.Response(
            200,
            json=[_pull(10, state="closed", merged_at="2025-04-01T12:00:00Z")],
            headers={
                "Link": "<https://api.github.com/repositories/1296269/pulls?state=all&page=1>; "
                'rel="prev", <https://api.github.com/repositories/1296269/pulls?state=all&page=1>;'
                ' rel="first"'
            },
        ),
    ]

    prs = list_prs(forge, REPO_URL, BRANCH, "main", space=SPACE)

    assert [(p.number, p.state) for p in prs] == [(30, "open"), (20, "closed"), (10, "merged")]
    assert route.call_count == 2
    first, second = (c.request for c in route.calls)
    assert first.url.params["per_page"] == "100"
    assert first.url.params["state"] == "all"
    assert str(second.url) == page2  # the next link, as given
    assert second.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_next_link_to_another_origin_is_not_followed(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    github.get(PULLS).respond(
        200,
        json=[_pull(30)],
        headers={"Link": '<https://evil.example.com/steal?page=2>; rel="next"'},
    )
    elsewhere = github.get(url__startswith="https://evil.example.com")
    assert [p.number for p in list_prs(forge, REPO_URL, BRANCH, "main")] == [30]
    assert not elsewhere.called


def test_find_pr_detects_merged_via_merged_at(github: respx.MockRouter, forge: GitHubForge) -> None:
    listing = github.get(PULLS).respond(
        200,
        json=[
            _pull(12, state="closed", merged_at="2025-05-04T08:00:00Z"),
            _pull(11, state="closed"),
        ],
    )

    pr = find_pr(forge, REPO_URL, BRANCH, "main", space=SPACE)

    assert pr is not None
    assert (pr.number, pr.state, pr.space) == (12, "merged", SPACE)
    params = listing.calls.last.request.url.params
    assert (params["state"], params["sort"], params["direction"]) == ("all", "created", "desc")
    assert params["head"] == f"{OWNER}:{BRANCH}"


def test_find_pr_tells_closed_from_merged(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(200, json=[_pull(11, state="closed")])
    pr = find_pr(forge, REPO_URL, BRANCH, "main")
    assert pr is not None
    assert pr.state == "closed"


def test_find_pr_skips_other_heads_and_returns_none(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    github.get(PULLS).respond(
        200,
        json=[_pull(5, ref="feature/x"), _pull(6, head_owner="a-fork")],
    )
    assert find_pr(forge, REPO_URL, BRANCH, "main") is None


# ---- decided errors -----------------------------------------------------------------------


def test_401_is_a_credentials_error(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(401, json=_error("Bad credentials", 401))
    with pytest.raises(ForgeRejected) as info:
        forge.ensure_pr(_spec())
    message = str(info.value)
    assert message.startswith(
        f"GitHub rejected the credentials (GITHUB_TOKEN) for {OWNER}/{NAME}: Bad credentials"
    )
    assert "listing pull requests" in message
    assert info.value.status == 401


def test_404_is_not_found(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(404, json=_error("Not Found", 404))
    with pytest.raises(NotFound) as info:
        find_pr(forge, REPO_URL, BRANCH, "main")
    assert str(info.value).startswith(
        f"{OWNER}/{NAME} not found on GitHub, or the token cannot see it"
    )


def test_422_carries_githubs_errors(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(200, json=[])
    github.post(PULLS).respond(
        422,
        json=_error(
            "Validation Failed",
            422,
            errors=[
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"No commits between main and {BRANCH}",
                },
                {"resource": "PullRequest", "field": "base", "code": "invalid"},
            ],
        ),
    )
    with pytest.raises(ForgeRejected) as info:
        forge.ensure_pr(_spec())
    message = str(info.value)
    assert f"{OWNER}/{NAME}" in message
    assert f"opening a pull request from {BRANCH} into main" in message
    assert f"Validation Failed: No commits between main and {BRANCH} (custom)" in message
    assert "PullRequest.base: invalid" in message
    assert info.value.status == 422


def test_403_without_rate_limit_is_a_permission_error(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    github.get(PULLS).respond(200, json=[])
    github.post(PULLS).respond(
        403,
        json=_error("Resource not accessible by personal access token", 403),
        headers={"x-ratelimit-remaining": "4999", "x-ratelimit-limit": "5000"},
    )
    with pytest.raises(ForgeRejected) as info:
        forge.ensure_pr(_spec())
    assert "Resource not accessible by personal access token" in str(info.value)
    assert f"{OWNER}/{NAME}" in str(info.value)
    assert info.value.status == 403


def test_no_token_is_decided_and_sends_nothing(
    github: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    route = github.get(PULLS)
    with GitHubForge(API) as f, pytest.raises(BadInput, match="GITHUB_TOKEN is not set"):
        f.ensure_pr(_spec())
    assert not route.called


def test_the_token_defaults_to_the_environment(
    github: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_fromTheEnvironment")
    monkeypatch.setenv("GITHUB_API_URL", "https://api.github.com/")
    route = github.get(PULLS).respond(200, json=[])
    with GitHubForge() as f:
        assert find_pr(f, REPO_URL, BRANCH, "main") is None
    assert route.calls.last.request.headers["Authorization"] == "Bearer ghp_fromTheEnvironment"


def test_decided_errors_become_non_retryable_activity_failures(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    github.get(PULLS).respond(401, json=_error("Bad credentials", 401))
    with pytest.raises(ApplicationError) as info:
        decided(forge.ensure_pr)(_spec())
    assert info.value.non_retryable
    assert info.value.type == "ForgeRejected"


# ---- retryable failures -------------------------------------------------------------------


def test_403_rate_limit_is_retryable_and_says_when_it_resets(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    reset = int(time.time()) + 600
    github.get(PULLS).respond(
        403,
        json=_error("API rate limit exceeded for user ID 1.", 403),
        headers={
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": "core",
        },
    )
    with pytest.raises(GitHubBusy) as info:
        forge.ensure_pr(_spec())
    err = info.value
    assert not isinstance(err, TributaryError)
    expected = datetime.fromtimestamp(reset, UTC)
    assert err.reset_at == expected
    assert expected.strftime("%Y-%m-%dT%H:%M:%SZ") in str(err)
    assert err.retry_after is not None
    assert 590 <= err.retry_after <= 600
    assert "API rate limit exceeded" in str(err)
    assert f"{OWNER}/{NAME}" in str(err)


def test_429_with_retry_after_is_retryable(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(
        429,
        json=_error("You have exceeded a secondary rate limit.", 429),
        headers={"retry-after": "60"},
    )
    with pytest.raises(GitHubBusy) as info:
        forge.ensure_pr(_spec())
    assert info.value.retry_after == 60
    assert "retry after 60 s" in str(info.value)


def test_403_secondary_rate_limit_is_retryable(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    github.get(PULLS).respond(200, json=[])
    github.post(PULLS).respond(
        403,
        json=_error(
            "You have exceeded a secondary rate limit. Please wait a few minutes before "
            "you try again.",
            403,
        ),
        headers={"retry-after": "30"},
    )
    with pytest.raises(GitHubBusy) as info:
        forge.ensure_pr(_spec())
    assert info.value.retry_after == 30


def test_rate_limits_pass_through_the_activity_wrapper(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    github.get(PULLS).respond(429, headers={"retry-after": "5"})
    with pytest.raises(GitHubBusy):  # a plain exception: Temporal retries it
        decided(forge.ensure_pr)(_spec())


def test_5xx_is_retryable(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(502, text="<html>Bad Gateway</html>")
    with pytest.raises(GitHubUnavailable) as info:
        forge.ensure_pr(_spec())
    assert not isinstance(info.value, TributaryError)
    assert "502" in str(info.value)


def test_transport_errors_are_retryable(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(GitHubUnavailable) as info:
        forge.ensure_pr(_spec())
    assert "connection refused" in str(info.value)
    assert info.value.__cause__ is None  # the httpx error holds the request headers


def test_an_unreadable_answer_is_retryable(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(200, text="<html>captive portal</html>")
    with pytest.raises(GitHubUnavailable, match="unreadable"):
        find_pr(forge, REPO_URL, BRANCH, "main")


# ---- the token stays secret -----------------------------------------------------------------


def _ratelimit(router: respx.MockRouter) -> None:
    router.get(PULLS).respond(403, json={"message": "x"}, headers={"x-ratelimit-remaining": "0"})


def _echo(router: respx.MockRouter) -> None:
    router.get(PULLS).respond(401, json={"message": f"Bad credentials: {TOKEN}"})


def _transport(router: respx.MockRouter) -> None:
    router.get(PULLS).mock(side_effect=httpx.ReadTimeout(f"timed out Bearer {TOKEN}"))


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(
            lambda r: r.get(PULLS).respond(401, json=_error("Bad credentials", 401)), id="401"
        ),
        pytest.param(lambda r: r.get(PULLS).respond(404, json=_error("Not Found", 404)), id="404"),
        pytest.param(lambda r: r.get(PULLS).respond(403, json=_error("Forbidden", 403)), id="403"),
        pytest.param(lambda r: r.get(PULLS).respond(500, text="oops"), id="500"),
        pytest.param(_ratelimit, id="ratelimit"),
        pytest.param(_echo, id="echoed-by-github"),
        pytest.param(_transport, id="transport"),
    ],
)
def test_the_token_never_appears_in_errors(
    github: respx.MockRouter, forge: GitHubForge, scenario: Any
) -> None:
    scenario(github)
    with pytest.raises(Exception) as info:  # noqa: PT011 - every kind is checked below
        forge.ensure_pr(_spec())
    err: BaseException | None = info.value
    while err is not None:
        assert TOKEN not in str(err)
        assert TOKEN not in repr(err)
        assert TOKEN not in repr(err.args)
        # what a traceback (or Temporal's failure converter) would show next
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    assert TOKEN not in repr(forge)
    assert "token=set" in repr(forge)


# ---- against the loopback contract fake (tests/fakes/github.py) ---------------------------


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    server = FakeGitHub(token=TOKEN)
    yield server
    server.stop()


@pytest.fixture
def ghe() -> Iterator[FakeGitHub]:
    """A GitHub Enterprise Server: the API under /api/v3, repositories on the same host."""
    server = FakeGitHub(token=TOKEN, prefix="/api/v3")
    yield server
    server.stop()


class Clock:
    """``sleep`` and ``heartbeat`` for the forge, recorded instead of slept."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self.beats: list[str] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def heartbeat(self, details: str) -> None:
        self.beats.append(details)


def _on(server: FakeGitHub, clock: Clock | None = None, **kwargs: Any) -> GitHubForge:
    clock = clock or Clock()
    return GitHubForge(
        server.api_url, TOKEN, sleep=clock.sleep, heartbeat=clock.heartbeat, **kwargs
    )


def _ghe_spec(server: FakeGitHub, **changes: Any) -> PullRequestSpec:
    return _spec(repo=f"{server.web_url}/{OWNER}/{NAME}.git", **changes)


def _answer(server: FakeGitHub, method: str, path: str, canned: Any, times: int = 1) -> None:
    status, body, headers = canned
    server.fail(method, path, status, body, headers, times=times)


# rate limits: how long the next attempt waits


def test_a_primary_limit_waits_until_the_reset(ghe: FakeGitHub) -> None:
    _answer(ghe, "GET", r"/pulls$", primary_limit(reset_in=1800))
    with _on(ghe) as f, pytest.raises(GitHubBusy) as info:
        f.ensure_pr(_ghe_spec(ghe))
    delay = info.value.delay(1)
    assert timedelta(seconds=1790) <= delay <= timedelta(seconds=1802)
    assert "resets at" in str(info.value)


def test_a_primary_limit_never_waits_more_than_an_hour() -> None:
    busy = GitHubBusy("x", reset_at=datetime.now(UTC) + timedelta(hours=3))
    assert busy.delay(1) == timedelta(hours=1)


def test_a_secondary_limit_with_retry_after_waits_that_long(ghe: FakeGitHub) -> None:
    _answer(ghe, "GET", r"/pulls$", secondary_limit(retry_after=90))
    with _on(ghe) as f, pytest.raises(GitHubBusy) as info:
        f.ensure_pr(_ghe_spec(ghe))
    assert info.value.reset_at is None  # the primary limit is fine: its reset is no wait
    assert info.value.delay(1) == timedelta(seconds=90)


def test_a_secondary_limit_without_headers_waits_a_minute_then_longer(ghe: FakeGitHub) -> None:
    _answer(ghe, "GET", r"/pulls$", secondary_limit())
    with _on(ghe) as f, pytest.raises(GitHubBusy) as info:
        f.ensure_pr(_ghe_spec(ghe))
    busy = info.value
    assert (busy.retry_after, busy.reset_at) == (None, None)
    assert [busy.delay(n) for n in (1, 2, 3)] == [
        timedelta(seconds=60),
        timedelta(seconds=120),
        timedelta(seconds=240),
    ]
    assert busy.delay(10) == timedelta(hours=1)
    assert "at least 60 s" in str(busy)


def test_the_rate_limit_reaches_temporal_as_the_next_retry_delay(ghe: FakeGitHub) -> None:
    _answer(ghe, "GET", r"/pulls$", primary_limit(reset_in=3000))
    with _on(ghe) as f, pytest.raises(ApplicationError) as info:
        rate_limited(decided(f.ensure_pr))(_ghe_spec(ghe))
    err = info.value
    assert not err.non_retryable
    assert err.type == "GitHubRateLimited"
    assert err.next_retry_delay is not None
    assert timedelta(seconds=2990) <= err.next_retry_delay <= timedelta(seconds=3002)
    assert "attempt 2 in 29" in err.message or "attempt 2 in 30" in err.message


# the head GitHub does not know yet


def test_a_head_invalid_right_after_the_push_is_asked_again(ghe: FakeGitHub) -> None:
    ghe.unknown_heads[BRANCH] = 3
    clock = Clock()
    with _on(ghe, clock) as f:
        pr, action = f.ensure_pr(_ghe_spec(ghe))
    assert (action, pr.number, pr.state) == ("opened", 1347, "open")
    assert clock.slept == [1.0, 2.0, 4.0]
    assert len(clock.beats) == 3
    assert all(BRANCH in beat for beat in clock.beats)
    assert len(ghe.requests("POST", r"/pulls$")) == 4


def test_a_head_invalid_that_lasts_is_final(ghe: FakeGitHub) -> None:
    ghe.unknown_heads[BRANCH] = 1000
    clock = Clock()
    with (
        _on(ghe, clock, head_wait=timedelta(seconds=20)) as f,
        pytest.raises(ForgeRejected) as info,
    ):
        f.ensure_pr(_ghe_spec(ghe))
    assert sum(clock.slept) == 20
    assert clock.slept == [1.0, 2.0, 4.0, 8.0, 5.0]
    assert "head: invalid" in str(info.value)
    assert "did not know the pushed branch" in str(info.value)
    assert ghe.pulls.get(f"{OWNER}/{NAME}", []) == []


def test_another_validation_failure_is_not_asked_again(ghe: FakeGitHub) -> None:
    ghe.fail(
        "POST",
        r"/pulls$",
        422,
        {
            "message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "field": "base", "code": "invalid"}],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
        },
    )
    clock = Clock()
    with _on(ghe, clock) as f, pytest.raises(ForgeRejected, match="base: invalid"):
        f.ensure_pr(_ghe_spec(ghe))
    assert clock.slept == []


# labels, answers alike


def test_labels_compare_case_insensitively_and_are_added_once(ghe: FakeGitHub) -> None:
    repo = f"{OWNER}/{NAME}"
    ghe.add_pull(repo, title=TITLE, body=BODY, ref=BRANCH, labels=("Sync",))
    spec = _ghe_spec(ghe)
    with _on(ghe) as f:
        pr, action = f.ensure_pr(spec)
        assert action == "unchanged"
        f.ensure_labels(spec, pr)
        f.ensure_labels(spec, pr)
    posts = ghe.requests("POST", r"/labels$")
    assert [c.body for c in posts] == [{"labels": ["confighub", "automated"]}]
    names = [lbl["name"] for lbl in ghe.pulls[repo][0]["labels"]]
    assert names == ["Sync", "confighub", "automated"]


def test_ensure_pr_does_not_label(ghe: FakeGitHub) -> None:
    with _on(ghe) as f:
        f.ensure_pr(_ghe_spec(ghe))
    assert ghe.requests(None, r"/labels$") == []


def test_a_body_too_long_for_github_is_cut_saying_so(ghe: FakeGitHub) -> None:
    with _on(ghe) as f:
        f.ensure_pr(_ghe_spec(ghe, body="x" * 70_000))
    sent = ghe.requests("POST", r"/pulls$")[0].body["body"]
    assert len(sent) < MAX_BODY
    assert sent.endswith("*(description cut: GitHub accepts fewer than 65,536 characters)*\n")
    assert cap_body("short") == "short"


# merged, whatever the merge method


@pytest.mark.parametrize("method", ["merge", "squash", "rebase"])
def test_a_merged_pull_request_is_merged_whatever_the_method(ghe: FakeGitHub, method: str) -> None:
    repo_url = f"{ghe.web_url}/{OWNER}/{NAME}.git"
    pull = ghe.add_pull(f"{OWNER}/{NAME}", title=TITLE, ref=BRANCH)
    with _on(ghe) as f:
        assert f.pr_state(repo_url, pull["number"]) == "open"
        ghe.merge(f"{OWNER}/{NAME}", pull["number"], method)
        assert f.pr_state(repo_url, pull["number"]) == "merged"


def test_a_closed_pull_request_is_closed_and_close_pr_closes(ghe: FakeGitHub) -> None:
    repo_url = f"{ghe.web_url}/{OWNER}/{NAME}.git"
    first = ghe.add_pull(f"{OWNER}/{NAME}", title=TITLE, ref=BRANCH)
    ghe.close(f"{OWNER}/{NAME}", first["number"])
    second = ghe.add_pull(f"{OWNER}/{NAME}", title=TITLE, ref=BRANCH)
    with _on(ghe) as f:
        assert f.pr_state(repo_url, first["number"]) == "closed"
        pr, _ = f.ensure_pr(_ghe_spec(ghe))
        assert pr.number == second["number"]
        f.close_pr(pr, repo=repo_url)
        assert f.pr_state(repo_url, second["number"]) == "closed"
    assert ghe.requests("PATCH")[-1].body == {"state": "closed"}


# GitHub Enterprise and pagination


def test_an_enterprise_api_serves_only_its_own_host(ghe: FakeGitHub) -> None:
    with _on(ghe) as f:
        assert find_pr(f, f"{ghe.web_url}/{OWNER}/{NAME}", BRANCH, "main") is None
        with pytest.raises(BadInput) as info:
            find_pr(f, REPO_URL, BRANCH, "main")
    assert "GITHUB_API_URL" in str(info.value)
    assert "127.0.0.1" in str(info.value)
    assert ghe.requests() == [ghe.requests()[0]]  # nothing was sent for github.com
    with pytest.raises(ApplicationError) as decided_info:
        decided(find_pr)(
            GitHubForge("https://ghe.example.com/api/v3", TOKEN), REPO_URL, BRANCH, "main"
        )
    assert decided_info.value.non_retryable
    assert decided_info.value.type == "BadInput"
    assert "ghe.example.com" in decided_info.value.message


def test_enterprise_hosts() -> None:
    assert _web_hosts("https://ghe.example.com/api/v3") == ("ghe.example.com",)
    assert _web_hosts("https://api.octo.ghe.com") == ("octo.ghe.com", "api.octo.ghe.com")
    assert _web_hosts("https://api.github.com") == ("github.com",)


def test_pagination_follows_every_page_of_an_enterprise_api(ghe: FakeGitHub) -> None:
    repo = f"{OWNER}/{NAME}"
    ghe.page_size = 2
    for _ in range(5):
        ghe.add_pull(repo, title=TITLE, ref=BRANCH, state="closed")
    with _on(ghe) as f:
        prs = list_prs(f, f"{ghe.web_url}/{repo}", BRANCH, "main")
        assert f.warnings == []
    assert [p.number for p in prs] == [1351, 1350, 1349, 1348, 1347]
    pages = ghe.requests("GET", r"/pulls$")
    assert [c.query.get("page") for c in pages] == [None, "2", "3"]
    assert all(c.path.startswith("/api/v3/") for c in pages)


def test_pagination_says_when_it_stops_at_its_cap(
    ghe: FakeGitHub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(forge_github, "MAX_PAGES", 2)
    repo = f"{OWNER}/{NAME}"
    ghe.page_size = 1
    for _ in range(4):
        ghe.add_pull(repo, title=TITLE, ref=BRANCH, state="closed")
    with _on(ghe) as f:
        prs = list_prs(f, f"{ghe.web_url}/{repo}", BRANCH, "main")
        assert len(prs) == 2
        assert len(f.warnings) == 1
        assert "after 2 pages" in f.warnings[0]
    assert "after 2 pages" in caplog.text


def test_pagination_follows_links_with_an_explicit_default_port(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    second = f"https://api.github.com:443/repos/{OWNER}/{NAME}/pulls?page=2"
    github.get(PULLS, params={"page": "2"}).respond(200, json=[_pull(1300)])
    github.get(PULLS).respond(200, json=[_pull(1347)], headers={"link": f'<{second}>; rel="next"'})
    prs = list_prs(forge, REPO_URL, BRANCH, "main")
    assert [p.number for p in prs] == [1347, 1300]
    assert forge.warnings == []
    assert _origin("https://api.github.com") == _origin("https://API.github.com:443/x")
    assert _origin("http://api.github.com") != _origin("https://api.github.com")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://ghe.example.com/api/v3", "must use https"),
        ("https://bot:pw-0001@ghe.example.com/api/v3", "must not hold credentials"),
        ("https://[ghe.example.com/api/v3", "is not an http(s) URL"),
        ("https://ghe.example.com:api/v3", "is not an http(s) URL"),
        ("ftp://ghe.example.com", "is not an http(s) URL"),
    ],
)
def test_the_api_url_is_https_without_credentials(url: str, problem: str) -> None:
    from adapters.forge import check_forge_env

    with pytest.raises(BadInput) as info:
        GitHubForge(url, TOKEN)
    assert problem in info.value.message
    assert "pw-0001" not in info.value.message
    with pytest.raises(BadInput):
        check_forge_env({"TRIBUTARY_FORGE": "github", "GITHUB_API_URL": url})
    with pytest.raises(BadInput, match="TRIBUTARY_FORGE"):
        check_forge_env({"TRIBUTARY_FORGE": "gitlab"})
    check_forge_env(
        {
            "TRIBUTARY_FORGE": "github",
            "GITHUB_API_URL": "http://127.0.0.1:1/api",
            "GITHUB_TOKEN": TOKEN,
        }
    )
    check_forge_env({})


@pytest.mark.parametrize("token", [None, "", "  "])
def test_the_github_forge_without_a_token_is_refused_at_start(token: str | None) -> None:
    """Not at the first sync PR, after a capture hours later."""
    from adapters.forge import check_forge_env

    env = {"TRIBUTARY_FORGE": "github"}
    if token is not None:
        env["GITHUB_TOKEN"] = token
    with pytest.raises(BadInput) as info:
        check_forge_env(env)
    assert info.value.field == "GITHUB_TOKEN"
    assert "GITHUB_TOKEN is not set" in info.value.message
