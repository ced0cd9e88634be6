"""The argocd actuator's adapter against a contract fake of Argo CD's REST API
(tests/fakes/argocd.py, built from argo-cd's swagger.json)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.argocd import ArgoCDActivities, ArgoSyncInput, ArgoWaitInput
from adapters.argocd import ArgoCDClient, ArgoCDUnavailable
from domain.errors import BadInput
from tests.fakes.argocd import FakeApp, FakeArgoCD

TOKEN = "eyJhbGciOiJIUzI1NiJ9.argocd-test-token.signature"


@pytest.fixture
def argo() -> Iterator[FakeArgoCD]:
    with FakeArgoCD(TOKEN) as fake:
        yield fake


def activities(fake: FakeArgoCD, token: str = TOKEN) -> ArgoCDActivities:
    return ArgoCDActivities(ArgoCDClient(fake.url, token, sleep=lambda _s: None))


def sync_input(
    app: str = "messagewall-dev", marker: str = "m-1", prune: bool = False
) -> ArgoSyncInput:
    return ArgoSyncInput(app=app, space="dev", unit="wall", marker=marker, prune=prune)


def test_sync_refreshes_hard_then_syncs_with_a_marker_and_waits_for_synced_healthy(
    argo: FakeArgoCD,
) -> None:
    argo.add(FakeApp("messagewall-dev"))
    acts = activities(argo)

    started = ActivityEnvironment().run(acts.sync, sync_input())
    waited = ActivityEnvironment().run(
        acts.wait, ArgoWaitInput(app="messagewall-dev", marker="m-1", timeout_seconds=60)
    )

    assert started.started
    assert (waited.state, waited.revision) == ("ready", FakeApp("x").revision)
    assert waited.message == "Argo CD: Synced and Healthy at 4e1a9c0d5b6f"
    first, post = argo.requests[0], argo.syncs()[0]
    assert (first.method, first.query) == ("GET", {"refresh": ["hard"]})
    assert argo.requests.index(post) == 1
    assert post.path == "/api/v1/applications/messagewall-dev/sync"
    assert post.body == {
        "name": "messagewall-dev",
        "prune": False,
        "infos": [
            {"name": "tributary", "value": "m-1"},
            {"name": "tributary-unit", "value": "dev/wall"},
        ],
        "appNamespace": "argocd",
    }
    assert {r.authorization for r in argo.requests} == {f"Bearer {TOKEN}"}
    assert all(r.query == {"refresh": ["hard"]} for r in argo.requests if r.method == "GET")


def test_a_retried_sync_finds_its_own_operation_and_does_not_sync_twice(
    argo: FakeArgoCD,
) -> None:
    argo.add(FakeApp("messagewall-dev"))
    acts = activities(argo)

    ActivityEnvironment().run(acts.sync, sync_input())
    again = ActivityEnvironment().run(acts.sync, sync_input())

    assert not again.started
    assert len(argo.syncs()) == 1


def test_a_failed_operation_reports_argo_cds_message_and_the_failed_resource(
    argo: FakeArgoCD,
) -> None:
    argo.add(
        FakeApp(
            "messagewall-dev",
            plan="fail",
            fail_message="one or more objects failed to apply, reason: admission webhook denied",
            fail_resource={
                "kind": "ServerlessEventAppClaim",
                "name": "wall",
                "status": "SyncFailed",
                "message": "spec.lambdaMemory: Invalid value: 99999",
            },
        )
    )
    acts = activities(argo)

    ActivityEnvironment().run(acts.sync, sync_input())
    waited = ActivityEnvironment().run(
        acts.wait, ArgoWaitInput(app="messagewall-dev", marker="m-1", timeout_seconds=60)
    )

    assert waited.state == "failed"
    assert waited.message == (
        "Argo CD sync Failed: one or more objects failed to apply, reason: admission webhook "
        "denied; ServerlessEventAppClaim/wall: spec.lambdaMemory: Invalid value: 99999"
    )


def test_synced_but_degraded_is_pending_with_the_health_message(argo: FakeArgoCD) -> None:
    argo.add(FakeApp("messagewall-dev", plan="degraded"))
    acts = activities(argo)

    ActivityEnvironment().run(acts.sync, sync_input())
    waited = ActivityEnvironment().run(
        acts.wait, ArgoWaitInput(app="messagewall-dev", marker="m-1", timeout_seconds=2)
    )

    assert waited.state == "pending"
    assert waited.message == (
        "not Synced and Healthy after 2s: sync Synced, health Degraded: Back-off pulling image"
    )


def test_5xx_is_retried_and_then_answers(argo: FakeArgoCD) -> None:
    argo.add(FakeApp("messagewall-dev"))
    argo.fail_next = [502, 503, 500]

    started = ActivityEnvironment().run(activities(argo).sync, sync_input())

    assert started.started
    assert [r.method for r in argo.requests] == ["GET", "GET", "GET", "GET", "POST"]


def test_a_lasting_5xx_is_a_retryable_error_without_the_token(argo: FakeArgoCD) -> None:
    argo.add(FakeApp("messagewall-dev"))
    argo.fail_next = [503] * 10

    with pytest.raises(ArgoCDUnavailable) as caught:
        ActivityEnvironment().run(activities(argo).sync, sync_input())

    assert "HTTP 503: transport is closing" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert not argo.syncs()


def test_another_operation_in_progress_is_retried_not_refused(argo: FakeArgoCD) -> None:
    argo.add(FakeApp("messagewall-dev"))
    acts = activities(argo)
    ActivityEnvironment().run(acts.sync, sync_input(marker="someone-else"))

    with pytest.raises(ArgoCDUnavailable) as caught:
        ActivityEnvironment().run(acts.sync, sync_input(marker="m-2"))

    assert str(caught.value) == (
        f"Argo CD at {argo.url}, Application messagewall-dev: "
        "another operation is already in progress"
    )


@pytest.mark.parametrize(
    ("token", "app", "kind", "message"),
    [
        (
            "not-the-token-of-anyone",
            "messagewall-dev",
            "ArgoCDRefused",
            "the worker's ARGOCD_AUTH_TOKEN was not accepted (HTTP 401: invalid session: "
            "token signature is invalid: Bearer ***)",
        ),
        (
            "limited-account-token",
            "messagewall-dev",
            "ArgoCDRefused",
            "permission denied (HTTP 403: permission denied: applications, get, "
            "default/messagewall-dev); the token's account needs `applications, get` and "
            "`applications, sync` on it",
        ),
        (
            TOKEN,
            "nope",
            "ArgoCDRefused",
            'no such Application (HTTP 404: applications.argoproj.io "nope" not found)',
        ),
    ],
)
def test_401_403_404_are_clear_decided_errors_without_the_token(
    argo: FakeArgoCD, token: str, app: str, kind: str, message: str
) -> None:
    argo.add(FakeApp("messagewall-dev"))
    argo.limited.add("limited-account-token")

    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(activities(argo, token).sync, sync_input(app=app))

    assert caught.value.type == kind
    assert caught.value.non_retryable
    assert message in caught.value.message
    assert f"Argo CD at {argo.url}, Application {app}: " in caught.value.message
    assert token not in caught.value.message
    assert not argo.syncs()


def test_no_argocd_server_is_a_clear_error() -> None:
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(ArgoCDActivities(None).sync, sync_input())

    assert caught.value.type == "BadInput"
    assert "the worker has no ARGOCD_SERVER" in caught.value.message


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ("http://argocd.example.com", "must use https (http is accepted on loopback only)"),
        ("https://admin:pw@argocd.example.com", "without credentials, a query"),
        ("https://argocd.example.com/?token=x", "without credentials, a query"),
        ("https://argocd.example.com/#pw", "or a fragment"),
        ("https://[argocd.example.com", "is not an address"),
        ("argocd.example.com:https", "is not an address"),
        ("https://", "is not an address"),
        ("https://argo cd.example.com", "is not an address"),
    ],
)
def test_server_address_is_checked(server: str, problem: str) -> None:
    with pytest.raises(BadInput) as caught:
        ArgoCDClient(server, TOKEN)
    assert problem in caught.value.message
    assert "pw" not in caught.value.message


def test_from_env_and_the_argocd_cli_address_form() -> None:
    client = ArgoCDClient.from_env(
        {"ARGOCD_SERVER": "argocd.example.com:443", "ARGOCD_AUTH_TOKEN": TOKEN}
    )
    assert client is not None
    assert client.base == "https://argocd.example.com:443"
    assert TOKEN not in repr(client)
    assert ArgoCDClient.from_env({}) is None
