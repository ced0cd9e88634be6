"""activities/forge_github.py against GitHub's documented REST request/response shapes.

Bodies follow the REST reference for "List pull requests", "Create a pull request",
"Update a pull request" and "Add labels to an issue" (API version 2022-11-28);
error bodies follow GitHub's ``{"message", "errors", "documentation_url", "status"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from temporalio.exceptions import ApplicationError

from activities._errors import decided
from activities.forge_github import (
    ForgeRejected,
    GitHubBusy,
    GitHubForge,
    GitHubUnavailable,
    parse_repo,
)
from domain.errors import BadInput, NotFound, TributaryError
from domain.sync import PR_LABELS, PullRequestSpec, sync_branch

API = "https://api.github.com"
TOKEN = "ghp_SECRETtoken123"
OWNER, NAME = "octo-org", "messagewall"
REPO_URL = f"https://github.com/{OWNER}/{NAME}.git"
SPACE = "messagewall-prod-east"
BRANCH = sync_branch(SPACE)
PULLS = f"{API}/repos/{OWNER}/{NAME}/pulls"
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
            assert f.find_pr("git@ghe.example.com:platform/infra.git", BRANCH, "main") is None
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

    _, action = forge.ensure_pr(_spec())

    assert action == "unchanged"
    assert labels.call_count == 1
    assert _sent(labels) == {"labels": ["confighub", "automated"]}


def test_labels_come_from_the_spec(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(200, json=[_pull(7, labels=("sync",))])
    labels = github.post(f"{API}/repos/{OWNER}/{NAME}/issues/7/labels").respond(200, json=[])
    forge.ensure_pr(_spec(labels=["sync", "prod", "prod"]))
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

    prs = forge.list_prs(REPO_URL, BRANCH, "main", space=SPACE)

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
    assert [p.number for p in forge.list_prs(REPO_URL, BRANCH, "main")] == [30]
    assert not elsewhere.called


def test_find_pr_detects_merged_via_merged_at(github: respx.MockRouter, forge: GitHubForge) -> None:
    listing = github.get(PULLS).respond(
        200,
        json=[
            _pull(12, state="closed", merged_at="2025-05-04T08:00:00Z"),
            _pull(11, state="closed"),
        ],
    )

    pr = forge.find_pr(REPO_URL, BRANCH, "main", space=SPACE)

    assert pr is not None
    assert (pr.number, pr.state, pr.space) == (12, "merged", SPACE)
    params = listing.calls.last.request.url.params
    assert (params["state"], params["sort"], params["direction"]) == ("all", "created", "desc")
    assert params["head"] == f"{OWNER}:{BRANCH}"


def test_find_pr_tells_closed_from_merged(github: respx.MockRouter, forge: GitHubForge) -> None:
    github.get(PULLS).respond(200, json=[_pull(11, state="closed")])
    pr = forge.find_pr(REPO_URL, BRANCH, "main")
    assert pr is not None
    assert pr.state == "closed"


def test_find_pr_skips_other_heads_and_returns_none(
    github: respx.MockRouter, forge: GitHubForge
) -> None:
    github.get(PULLS).respond(
        200,
        json=[_pull(5, ref="feature/x"), _pull(6, head_owner="a-fork")],
    )
    assert forge.find_pr(REPO_URL, BRANCH, "main") is None


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
        forge.find_pr(REPO_URL, BRANCH, "main")
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
        assert f.find_pr(REPO_URL, BRANCH, "main") is None
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
        forge.find_pr(REPO_URL, BRANCH, "main")


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
