"""Connection settings from the environment (shared/CLI.md) and the Temporal client."""

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

from authority import authority_url
from domain.redact import redact, secret_values

SEARCH_ATTRIBUTES = ("TributarySpace", "TributaryUnit", "TributaryDriftState")


@dataclass(frozen=True)
class Settings:
    temporal_address: str = field(
        default_factory=lambda: os.environ.get("TEMPORAL_ADDRESS", "localhost:7233")
    )
    namespace: str = field(default_factory=lambda: os.environ.get("TEMPORAL_NAMESPACE", "default"))
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


async def connect(settings: Settings) -> Client:
    """A client with the pydantic data converter, as every client of ours must have
    (and failures redacted on their way into history)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.namespace,
        data_converter=DATA_CONVERTER,
    )
