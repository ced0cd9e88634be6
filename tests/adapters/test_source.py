"""adapters/source.py: the worker's cache of authoring repos, and URL hygiene."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest

from adapters.source import SourceCache
from domain.errors import BadInput
from domain.repos import (
    CheckoutResult,
    SourceRef,
    has_credentials,
    normalize_repo,
    redact,
    repo_problem,
)
from starter import gitref
from tests.support import git

UNKNOWN = "0123456789abcdef0123456789abcdef01234567"


def _ref(repo, commit: str) -> SourceRef:
    return SourceRef(repo=str(repo), commit=commit)


# ---- checkout ---------------------------------------------------------------------------


def test_checkout_of_a_file_url(cache, messagewall):
    result = cache.checkout(_ref(messagewall.url, messagewall.head))
    assert isinstance(result, CheckoutResult)
    assert result.commit == messagewall.head
    assert result.subject == "messagewall: initial"
    assert result.author == "Dana Developer <dana@example.com>"
    assert datetime.fromisoformat(result.committed_at).tzinfo is not None


def test_checkout_of_a_plain_path(cache, messagewall):
    result = cache.checkout(_ref(messagewall.remote, messagewall.head))
    assert (result.commit, result.subject, result.author) == (
        messagewall.head,
        "messagewall: initial",
        "Dana Developer <dana@example.com>",
    )


def test_path_and_file_url_of_one_repo_share_one_mirror(cache, messagewall):
    cache.checkout(_ref(messagewall.url, messagewall.head))
    cache.checkout(_ref(messagewall.remote, messagewall.head))
    assert len(list((cache.root / "repos").iterdir())) == 1


def test_checkout_of_a_later_commit_fetches_it(cache, messagewall):
    cache.checkout(_ref(messagewall.url, messagewall.head))
    messagewall.write("README.md", "hello\n")
    second = messagewall.commit("docs: add a readme")
    result = cache.checkout(_ref(messagewall.url, second))
    assert (result.commit, result.subject) == (second, "docs: add a readme")


def test_checkout_of_an_abbreviated_commit(cache, messagewall):
    result = cache.checkout(_ref(messagewall.url, messagewall.head[:12]))
    assert result.commit == messagewall.head


def test_checkout_of_an_unadvertised_commit(cache, messagewall):
    """A commit on no branch (like a PR head) is fetched by its id."""
    messagewall.write("README.md", "detached\n")
    git(messagewall.work, "add", "-A")
    git(messagewall.work, "commit", "-q", "-m", "side commit")
    side = messagewall.head
    git(messagewall.work, "push", "-q", "origin", f"{side}:refs/pull/1/head")
    result = cache.checkout(_ref(messagewall.url, side))
    assert (result.commit, result.subject) == (side, "side commit")


def test_unknown_commit_is_bad_input(cache, messagewall):
    with pytest.raises(BadInput) as e:
        cache.checkout(_ref(messagewall.url, UNKNOWN))
    assert e.value.file == messagewall.url
    assert UNKNOWN in e.value.message


def test_unknown_commit_on_a_plain_path_is_bad_input(cache, messagewall):
    with pytest.raises(BadInput) as e:
        cache.checkout(_ref(messagewall.remote, UNKNOWN))
    assert e.value.file == str(messagewall.remote)


def test_unknown_non_sha_ref_is_bad_input(cache, messagewall):
    with pytest.raises(BadInput) as e:
        cache.checkout(_ref(messagewall.url, "no-such-branch"))
    assert e.value.message == (f"{messagewall.url}: commit no-such-branch is not in the repository")


def test_a_path_that_is_not_a_repo_is_bad_input(cache, tmp_path):
    plain = tmp_path / "plain-dir"
    plain.mkdir()
    with pytest.raises(BadInput) as e:
        cache.checkout(_ref(plain, UNKNOWN))
    assert e.value.file == str(plain)
    assert e.value.message.startswith(f"{plain}: cannot fetch: ")


def test_a_path_that_is_not_a_repo_says_why(cache, tmp_path):
    plain = tmp_path / "plain-dir"
    plain.mkdir()
    with pytest.raises(BadInput) as e:
        cache.checkout(_ref(plain, UNKNOWN))
    assert "does not appear to be a git repository" in e.value.message


def test_a_path_that_does_not_exist_is_bad_input(cache, tmp_path):
    with pytest.raises(BadInput) as e:
        cache.checkout(_ref(tmp_path / "nowhere", UNKNOWN))
    assert e.value.file == str(tmp_path / "nowhere")


def test_credentials_never_reach_the_error(cache):
    with pytest.raises(Exception) as e:  # noqa: PT011 - transient or bad input, both fine here
        cache.checkout(_ref("https://robot:s3cr3t-token@127.0.0.1:9/org/app.git", UNKNOWN))
    assert "s3cr3t-token" not in str(e.value)
    assert "s3cr3t-token" not in repr(e.value)
    assert e.value.__cause__ is None


# ---- tree ------------------------------------------------------------------------------------


def test_tree_exports_the_files_of_the_commit(cache, messagewall):
    tree = cache.tree(_ref(messagewall.url, messagewall.head))
    assert tree == cache.root / "trees" / messagewall.head
    assert sorted(p.name for p in tree.iterdir()) == ["infra", "platform", "tributary.yaml"]
    assert (tree / "tributary.yaml").read_text() == messagewall.read("tributary.yaml")
    assert (tree / "infra/claims/overlays/prod-east/kustomization.yaml").read_text() == (
        messagewall.read("infra/claims/overlays/prod-east/kustomization.yaml")
    )
    assert not (tree / ".git").exists()


def test_tree_of_an_older_commit_has_the_older_files(cache, messagewall):
    first = messagewall.head
    messagewall.edit(
        "tributary.yaml", lambda s: s.replace("drift_interval: 5m", "drift_interval: 7m")
    )
    second = messagewall.commit("slower drift checks")
    old = cache.tree(_ref(messagewall.url, first))
    new = cache.tree(_ref(messagewall.url, second))
    assert old != new
    assert "drift_interval: 7m" not in (old / "tributary.yaml").read_text()
    assert "drift_interval: 7m" in (new / "tributary.yaml").read_text()


def test_second_tree_call_is_a_cache_hit(cache, messagewall):
    ref = _ref(messagewall.url, messagewall.head)
    tree = cache.tree(ref)
    stamp = (tree.stat().st_mtime_ns, (tree / "tributary.yaml").stat().st_mtime_ns)
    # a hit needs no fetch: even with the remote gone it answers
    shutil.rmtree(messagewall.remote)
    assert cache.tree(ref) == tree
    assert (tree.stat().st_mtime_ns, (tree / "tributary.yaml").stat().st_mtime_ns) == stamp
    assert sorted(p.name for p in (cache.root / "trees").iterdir()) == [messagewall.head]


def test_checkout_after_the_mirror_has_the_commit_needs_no_remote(cache, messagewall):
    ref = _ref(messagewall.url, messagewall.head)
    cache.checkout(ref)
    shutil.rmtree(messagewall.remote)
    assert cache.checkout(ref).commit == messagewall.head


def test_a_second_cache_on_the_same_root_reuses_the_tree(tmp_path, messagewall):
    ref = _ref(messagewall.url, messagewall.head)
    first = SourceCache(tmp_path / "shared").tree(ref)
    shutil.rmtree(messagewall.remote)
    assert SourceCache(tmp_path / "shared").tree(ref) == first


def test_tree_of_an_unknown_commit_is_bad_input_and_leaves_no_tree(cache, messagewall):
    with pytest.raises(BadInput):
        cache.tree(_ref(messagewall.url, "no-such-branch"))
    assert list((cache.root / "trees").iterdir()) == []


# ---- redact / has_credentials / normalize_repo ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://ghp_token@github.com:8443/o/r", "https://github.com:8443/o/r"),
        ("ssh://git@host.example/x.git", "ssh://host.example/x.git"),
        ("https://github.com/o/r.git", "https://github.com/o/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("file:///srv/git/r.git", "file:///srv/git/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
    ],
)
def test_redact(url, expected):
    assert redact(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@github.com/o/r.git", True),
        ("https://ghp_token@github.com/o/r", True),
        ("http://token@example.com/r", True),
        ("ssh://git:pw@host/x", True),
        ("ssh://git@host/x", False),
        ("git@github.com:o/r.git", False),
        ("https://github.com/o/r", False),
        ("file:///x", False),
        ("/srv/x", False),
    ],
)
def test_has_credentials(url, expected):
    assert has_credentials(url) is expected


def test_normalize_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize_repo("https://github.com/o/r.git") == "https://github.com/o/r.git"
    assert normalize_repo("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert normalize_repo("file:///srv/r.git") == "file:///srv/r.git"
    assert normalize_repo("/srv/r.git") == "file:///srv/r.git"
    assert normalize_repo("rel/r.git") == (tmp_path / "rel/r.git").as_uri()
    assert normalize_repo("./a/../r.git") == (tmp_path / "r.git").as_uri()
    assert normalize_repo("~/r.git") == (Path.home() / "r.git").resolve().as_uri()


# ---- ancestry: is a newer commit published already? (issue 9) ----------------------------


def test_descendants_are_the_commits_that_build_on_this_one(cache, messagewall):
    first = messagewall.head
    messagewall.write("README.md", "hello\n")
    second = messagewall.commit("docs: add a readme")
    cache.checkout(_ref(messagewall.url, second))

    assert cache.descendants(_ref(messagewall.url, first), [second, first, UNKNOWN]) == [second]
    assert cache.descendants(_ref(messagewall.url, second), [first, second]) == []
    # only full commit ids reach git: nothing can become an option
    assert cache.descendants(_ref(messagewall.url, first), ["--all", "HEAD", second[:12]]) == []


# ---- hostile repos and refs never become git options (issue 10, hole 2) ---------------------

SHA = "a" * 40


def _hostile(tmp_path: Path) -> tuple[str, Path]:
    pwned = tmp_path / "pwned"
    return f"--upload-pack=touch {pwned};false ://", pwned


@pytest.mark.parametrize(
    ("repo", "fragment"),
    [
        ("--upload-pack=touch /tmp/x;false ://", "must not start with '-'"),
        ("-c", "must not start with '-'"),
        ("ssh://-oProxyCommand=touch%20x/r.git", "has no valid host name"),
        ("ext::sh -c touch% /tmp/x", "transport helpers"),
        ("ftp://host/r.git", "scheme 'ftp'"),
        ("git@host:-r.git", "must not have a path starting with '-'"),
        ("https://host/r.git\n--upload-pack=x", "control character"),
    ],
)
def test_repo_forms_that_git_could_read_as_options_are_refused(repo, fragment):
    assert fragment in (repo_problem(repo) or "")
    with pytest.raises(BadInput) as e:
        normalize_repo(repo)
    assert e.value.field == "repo"


@pytest.mark.parametrize(
    "repo",
    [
        "https://github.com/o/r.git",
        "http://127.0.0.1:8080/r.git",
        "ssh://git@github.com:22/o/r.git",
        "git@github.com:o/r.git",
        "file:///srv/r.git",
        "/srv/r.git",
        "rel/r.git",
        "~/r.git",
    ],
)
def test_known_repo_forms_pass(repo):
    assert repo_problem(repo) is None


def test_a_hostile_repo_runs_nothing_on_the_worker(cache, tmp_path):
    repo, pwned = _hostile(tmp_path)
    with pytest.raises(BadInput):
        cache.checkout(_ref(repo, SHA))
    assert not pwned.exists()
    assert list((cache.root / "repos").iterdir()) == []


def test_fetch_puts_the_url_after_double_dash(cache, tmp_path):
    """Even a URL that got past the check is a repository to git, never an option."""
    import git as gitpython

    repo, pwned = _hostile(tmp_path)
    mirror = gitpython.Repo.init(tmp_path / "m.git", bare=True)
    with pytest.raises(BadInput) as e:
        cache._fetch(mirror, repo, _ref("file:///x", SHA))
    assert "is not supported" in e.value.message
    assert not pwned.exists()


@pytest.mark.parametrize("commit", ["--output=/tmp/x", "../../etc", "HEAD^{tree}", "a b"])
def test_hostile_commits_are_refused_before_git(cache, messagewall, commit):
    with pytest.raises(BadInput) as e:
        cache.checkout(_ref(messagewall.url, commit))
    assert e.value.field == "commit"
    with pytest.raises(BadInput):
        cache.tree(_ref(messagewall.url, commit))
    assert list((cache.root / "trees").iterdir()) == []


def test_cli_refuses_a_hostile_repo_with_a_commit_id(tmp_path):
    repo, pwned = _hostile(tmp_path)
    with pytest.raises(BadInput) as e:
        gitref.resolve(repo, SHA)
    assert e.value.exit_code == 2
    assert not pwned.exists()


def test_cli_refuses_a_hostile_ref(tmp_path, messagewall):
    _, pwned = _hostile(tmp_path)
    for repo in (messagewall.url, str(messagewall.remote)):
        with pytest.raises(BadInput) as e:
            gitref.resolve(repo, f"--upload-pack=touch {pwned}")
        assert e.value.field == "--ref"
    assert not pwned.exists()


def test_cli_ls_remote_reads_a_hostile_url_as_a_url(tmp_path):
    """Past the check, ``--`` still keeps the URL from becoming an ls-remote option."""
    repo, pwned = _hostile(tmp_path)
    with pytest.raises(BadInput) as e:
        gitref._resolve_remote(repo, "main")
    assert "cannot read the repository" in e.value.message
    assert not pwned.exists()


# ---- the commit's tree: links out of the repository (issue 10, hole 11) ---------------------


def test_a_link_out_of_the_repository_is_bad_input_naming_the_file(cache, messagewall):
    (messagewall.work / "infra").mkdir(exist_ok=True)
    (messagewall.work / "infra" / "passwd").symlink_to("/etc/passwd")
    git(messagewall.work, "add", "-A")
    commit = messagewall.commit("link out")
    with pytest.raises(BadInput) as e:
        cache.tree(_ref(messagewall.url, commit))
    assert e.value.file == "infra/passwd"
    assert "outside the repository" in e.value.message
    assert list((cache.root / "trees").iterdir()) == []


def test_a_relative_link_climbing_out_is_bad_input(cache, messagewall):
    (messagewall.work / "up").symlink_to("../../../../etc")
    git(messagewall.work, "add", "-A")
    commit = messagewall.commit("link up")
    with pytest.raises(BadInput) as e:
        cache.tree(_ref(messagewall.url, commit))
    assert e.value.file == "up"


def test_the_activity_reports_a_link_out_as_non_retryable(cache, messagewall):
    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from activities.git import GitActivities
    from domain.repos import CheckoutInput

    (messagewall.work / "passwd").symlink_to("/etc/passwd")
    git(messagewall.work, "add", "-A")
    commit = messagewall.commit("link out")
    with pytest.raises(ApplicationError) as e:
        ActivityEnvironment().run(
            GitActivities(cache).checkout, CheckoutInput(source=_ref(messagewall.url, commit))
        )
    assert (e.value.type, e.value.non_retryable) == ("BadInput", True)
