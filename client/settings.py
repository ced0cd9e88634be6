"""Connection settings from the environment (shared/CLI.md) and the Temporal client.

Temporal's own environment configuration applies (``temporalio.envconfig``): the
``TEMPORAL_*`` variables (address, namespace, API key, TLS client certificate and
key, ``TEMPORAL_PROFILE``) over the profile of the TOML file (``TEMPORAL_CONFIG_FILE``,
else ``~/.config/temporalio/temporal.toml``), as the ``temporal`` CLI reads them.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverter, PayloadConverter
from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig
from temporalio.runtime import Runtime

from authority import authority_url
from domain.errors import BadInput
from domain.redact import redact, secret_values


def temporal_profile() -> ClientConfigProfile:
    """The Temporal environment configuration: TOML profile, ``TEMPORAL_*`` over it."""
    named = os.environ.get("TEMPORAL_CONFIG_FILE")
    if named and not os.path.exists(named):
        # the SDK reads a missing file as no file: the operator's profile would be ignored
        raise BadInput(
            f"Temporal environment configuration: {named!r} does not exist",
            field="TEMPORAL_CONFIG_FILE",
        )
    try:
        return ClientConfigProfile.load()
    except Exception as e:  # the bridge's ConfigError: a bad file, an unknown profile
        # Name what the operator set: the file (TOML errors) or the profile.
        field = "TEMPORAL_PROFILE"
        if "Profile" not in str(e) and os.environ.get("TEMPORAL_CONFIG_FILE"):
            field = "TEMPORAL_CONFIG_FILE"
        raise BadInput(f"Temporal environment configuration: {e}", field=field) from e


def connect_config(settings: Settings, *, env_config: bool = True) -> ClientConnectConfig:
    """What ``Client.connect`` takes from the environment configuration (API key, TLS,
    gRPC metadata), with the address and namespace of ``settings``."""
    config = ClientConnectConfig()
    if env_config:
        try:
            config = temporal_profile().to_client_connect_config()
        except OSError as e:  # a TLS certificate or key file that is not there
            raise BadInput(
                f"Temporal environment configuration: {e}", field="TEMPORAL_TLS_CLIENT_CERT_PATH"
            ) from e
    config["target_host"] = settings.temporal_address
    config["namespace"] = settings.namespace
    return config


@dataclass(frozen=True)
class Settings:
    temporal_address: str = field(
        default_factory=lambda: temporal_profile().address or "localhost:7233"
    )
    namespace: str = field(default_factory=lambda: temporal_profile().namespace or "default")
    task_queue: str = field(
        default_factory=lambda: os.environ.get("TRIBUTARY_TASK_QUEUE", "tributary")
    )
    authority: str = field(default_factory=authority_url)
    cache_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("TRIBUTARY_CACHE", ".tributary/cache"))
    )
    ui_url: str = field(default_factory=lambda: os.environ.get("TRIBUTARY_UI_URL", ""))

    @classmethod
    def from_env_file(cls, path: Path) -> Settings:
        """Settings from the ``export`` lines ``tributary dev`` writes to ``dev.env``."""
        env: dict[str, str] = {}
        for line in path.read_text().splitlines():
            key, sep, value = line.removeprefix("export ").partition("=")
            if sep:
                env[key.strip()] = value.strip()
        defaults = cls()
        return cls(
            temporal_address=env.get("TEMPORAL_ADDRESS", defaults.temporal_address),
            namespace=env.get("TEMPORAL_NAMESPACE", defaults.namespace),
            task_queue=env.get("TRIBUTARY_TASK_QUEUE", defaults.task_queue),
            authority=env.get("TRIBUTARY_AUTHORITY", defaults.authority),
            cache_dir=Path(env.get("TRIBUTARY_CACHE", str(defaults.cache_dir))),
            ui_url=env.get("TRIBUTARY_UI_URL", defaults.ui_url),
        )

    def workflow_link(self, workflow_id: str) -> str:
        """The Web UI page of a workflow, when a UI address is known."""
        if not self.ui_url:
            return ""
        base = self.ui_url.rstrip("/")
        return f"{base}/namespaces/{self.namespace}/workflows/{quote(workflow_id, safe='')}"


class RedactingFailureConverter(DefaultFailureConverter):
    """Failures enter workflow history with redacted messages and stack traces.

    An activity that fails with an exception we did not decide (a driver error, git's
    stderr) becomes a failure whose message is ``str(exception)``; whatever it says,
    no credential of this process is stored with it. The secrets are read once, when
    the converter is built outside any workflow.
    """

    def __init__(self) -> None:
        super().__init__()
        self.secrets = secret_values(os.environ)

    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        super().to_failure(exception, payload_converter, failure)
        current: Failure | None = failure
        while current is not None:
            current.message = redact(current.message, self.secrets)
            current.stack_trace = redact(current.stack_trace, self.secrets)
            current = current.cause if current.HasField("cause") else None


DATA_CONVERTER = dataclasses.replace(
    pydantic_data_converter, failure_converter_class=RedactingFailureConverter
)


async def connect(
    settings: Settings, *, runtime: Runtime | None = None, env_config: bool = True
) -> Client:
    """A client with the pydantic data converter, as every client of ours must have
    (and failures redacted on their way into history).

    API key and TLS come from Temporal's environment configuration (``env_config``;
    the dev stack's own server takes none); ``runtime`` carries the worker's metrics.
    """
    return await Client.connect(
        **connect_config(settings, env_config=env_config),
        data_converter=DATA_CONVERTER,
        runtime=runtime,
    )
