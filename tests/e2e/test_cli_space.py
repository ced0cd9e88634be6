"""`tributary space set` refuses bad input before it reaches Temporal (exit 2, nothing
written); the round trip through the worker is in test_cli_apply.py."""

from __future__ import annotations

import pytest

from tests.support import free_port, run_cli


@pytest.fixture
def nowhere() -> dict[str, str]:
    """A Temporal address nobody listens on: reaching it would fail with exit 1."""
    return {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--approval", "bogus"], "invalid choice: 'bogus'"),
        (["--allow-kind", "ConfigMap"], "--allow-kind: 'ConfigMap' is not GROUP/KIND"),
        (["--allow-kind", "Bad_Group/X"], "'Bad_Group' is not an API group"),
        (["--namespace", "team-a/../kube-system"], "--namespace: 'team-a/../kube-system'"),
        ([], "nothing to set"),
        (["--actuator", "flux"], "invalid choice: 'flux'"),
        (
            ["--actuator", "argocd", "--argocd-app", "Bad_Name"],
            "--argocd-app: Argo CD Application name 'Bad_Name' is not a valid Kubernetes name",
        ),
        (["--actuator", "argocd", "--argocd-app", ""], "--argocd-app: actuator argocd needs"),
    ],
)
def test_space_set_bad_input_exits_2(
    nowhere: dict[str, str], args: list[str], message: str
) -> None:
    result = run_cli("space", "set", "app-prod", *args, "--json", env=nowhere)
    assert result.code == 2, result.stderr
    assert message in result.json["error"]["message"]


def test_space_name_is_checked(nowhere: dict[str, str]) -> None:
    result = run_cli("space", "show", "x/../y", env=nowhere)
    assert result.code == 2
    assert "SPACE: space name 'x/../y' is not a valid Kubernetes name" in result.stderr


@pytest.mark.parametrize("assignment", ["metadata={name: x}", "metadata.name.x=1", "kind=Secret"])
def test_set_refuses_identity_paths_before_starting(
    nowhere: dict[str, str], assignment: str
) -> None:
    result = run_cli("set", "--space", "s", assignment, "--message", "m", env=nowhere)
    assert result.code == 2, result.stderr
    assert "a unit's identity cannot be changed by `set`" in result.stderr
