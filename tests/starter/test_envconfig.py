"""Connection settings from Temporal's environment configuration (``temporalio.envconfig``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from client.settings import Settings, connect_config
from domain.errors import BadInput
from tests.support import run_cli

PROFILES = """
[profile.default]
address = "default.example:7233"

[profile.prod]
address = "prod.example:7233"
namespace = "acme.prod"

[profile.prod.tls]
client_cert_path = "{cert}"
client_key_path = "{key}"
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    path = tmp_path / "temporal.toml"
    path.write_text(PROFILES.format(cert=cert, key=key))
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(path))
    return path


def test_the_profile_and_the_environment_over_it(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().temporal_address == "default.example:7233"
    assert Settings().namespace == "default"

    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    settings = Settings()
    assert (settings.temporal_address, settings.namespace) == ("prod.example:7233", "acme.prod")
    config = connect_config(settings)
    assert config["target_host"] == "prod.example:7233"
    tls = config["tls"]
    assert not isinstance(tls, bool)
    assert tls.client_cert == b"-----BEGIN CERTIFICATE-----\n"
    assert tls.client_private_key == b"-----BEGIN PRIVATE KEY-----\n"

    monkeypatch.setenv("TEMPORAL_ADDRESS", "override.example:7233")
    monkeypatch.setenv("TEMPORAL_API_KEY", "key-for-cloud-123456")
    settings = Settings()
    assert settings.temporal_address == "override.example:7233"
    assert connect_config(settings)["api_key"] == "key-for-cloud-123456"
    # the dev stack's own server takes none of it
    assert connect_config(settings, env_config=False) == {
        "target_host": "override.example:7233",
        "namespace": "acme.prod",
    }


def test_an_unknown_profile_or_a_missing_certificate_is_bad_input(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_PROFILE", "staging")
    with pytest.raises(BadInput, match="Profile 'staging' not found"):
        Settings()
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    config_file.with_name("client.pem").unlink()
    with pytest.raises(BadInput, match=r"client\.pem"):
        connect_config(Settings())


def test_the_cli_exits_2_on_an_unknown_profile(config_file: Path) -> None:
    result = run_cli(
        "units",
        "dev",
        "--json",
        env={"TEMPORAL_PROFILE": "staging", "TEMPORAL_CONFIG_FILE": str(config_file)},
    )
    assert result.code == 2, result.stderr
    assert "Profile 'staging' not found" in result.json["error"]["message"]


def test_a_bad_or_missing_config_file_is_bad_input_naming_it(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text("not [toml")
    with pytest.raises(BadInput) as malformed:
        Settings()
    assert malformed.value.field == "TEMPORAL_CONFIG_FILE"
    config_file.unlink()
    with pytest.raises(BadInput, match="does not exist") as missing:
        Settings()
    assert missing.value.field == "TEMPORAL_CONFIG_FILE"
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", os.devnull)  # what `tributary dev` gives its worker
    assert Settings().temporal_address
