"""Connection settings from the environment (shared/CLI.md) and the Temporal client."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from authority import authority_url

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

    def workflow_link(self, workflow_id: str) -> str:
        """The Web UI page of a workflow, when a UI address is known."""
        if not self.ui_url:
            return ""
        from urllib.parse import quote

        return f"{self.ui_url.rstrip('/')}/namespaces/{self.namespace}/workflows/{quote(workflow_id, safe='')}"


async def connect(settings: Settings) -> Client:
    """A client with the pydantic data converter, as every client of ours must have."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.namespace,
        data_converter=pydantic_data_converter,
    )
