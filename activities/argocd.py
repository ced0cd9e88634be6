"""The ``argocd`` actuator: an Argo CD Application delivers a space's live revisions.

The Application's source is rendered by Tributary's Config Management Plugin
(``deploy/argocd/``: ``tributary render --space S --live``), so what Argo CD applies
is exactly the space's live revisions. An apply records the live revision first
(ApplyWorkflow), then these activities ask Argo CD to sync and watch the operation:

- ``POST /api/v1/applications/{name}/sync`` (``ApplicationSyncRequest``) after a
  ``GET …?refresh=hard`` so the repo server renders again (its manifest cache is keyed
  by the Git revision, which did not move);
- ``GET /api/v1/applications/{name}?refresh=hard`` until ``status.operationState`` of
  *our* operation (marked in ``operation.info``) has ended, then until
  ``status.sync.status == "Synced"`` and ``status.health.status == "Healthy"``.

The client (the token, retries, what is retried and what is not): ``adapters/argocd.py``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel
from temporalio import activity

from activities._errors import decided
from adapters.argocd import INFO_NAME, ArgoCDClient, app_condition, failure_message, ours
from domain.errors import BadInput

POLL_FIRST = 1.0
POLL_MAX = 8.0


# ---- messages ----------------------------------------------------------------------------


class ArgoSyncInput(BaseModel):
    app: str
    space: str
    unit: str
    marker: str  # names this apply in operation.info; a retried call finds its own sync
    prune: bool = False  # a delete: the unit is gone from the render, prune it


class ArgoSyncResult(BaseModel):
    started: bool  # False: the operation was already ours (a retried activity)
    phase: str = ""


class ArgoWaitInput(BaseModel):
    app: str
    marker: str
    timeout_seconds: int


class ArgoWaitResult(BaseModel):
    # ready: our sync Succeeded and the app is Synced and Healthy; failed: the sync
    # operation Failed or Errored (Argo CD's message); pending: not there in time.
    state: Literal["ready", "failed", "pending"]
    message: str = ""
    revision: str = ""  # status.sync.revision: the Git revision Argo CD synced


# ---- activities ------------------------------------------------------------------------------


class ArgoCDActivities:
    def __init__(self, client: ArgoCDClient | None) -> None:
        self.client = client

    def _client(self) -> ArgoCDClient:
        if self.client is None:
            raise BadInput(
                "the space's actuator is argocd, but the worker has no ARGOCD_SERVER "
                "(and ARGOCD_AUTH_TOKEN); set them in the worker's environment",
                field="ARGOCD_SERVER",
            )
        return self.client

    @activity.defn(name="argocd.sync")
    @decided
    def sync(self, inp: ArgoSyncInput) -> ArgoSyncResult:
        """Refresh the Application hard (the CMP renders the new live revision) and sync."""
        client = self._client()
        app = client.get_app(inp.app, refresh="hard")
        state = ours(app, inp.marker)
        if state is not None:
            return ArgoSyncResult(started=False, phase=str(state.get("phase") or ""))
        activity.heartbeat("refreshed; starting the sync")
        body: dict[str, Any] = {
            "name": inp.app,
            "prune": inp.prune,
            "infos": [
                {"name": INFO_NAME, "value": inp.marker},
                {"name": "tributary-unit", "value": f"{inp.space}/{inp.unit}"},
            ],
        }
        namespace = (app.get("metadata") or {}).get("namespace")
        if namespace:
            body["appNamespace"] = namespace
        started = client.sync(inp.app, body)
        phase = str(((started.get("status") or {}).get("operationState") or {}).get("phase") or "")
        return ArgoSyncResult(started=True, phase=phase or "Running")

    @activity.defn(name="argocd.wait")
    @decided
    def wait(self, inp: ArgoWaitInput) -> ArgoWaitResult:
        """Poll (hard refresh, backing off) until our sync ended and the app is Synced and
        Healthy, the sync Failed or Errored, or the timeout."""
        client = self._client()
        deadline = time.monotonic() + inp.timeout_seconds
        delay = POLL_FIRST
        last = "waiting for the sync to start"
        while True:
            app = client.get_app(inp.app, refresh="hard")
            state = ours(app, inp.marker)
            sync, health, health_message = app_condition(app)
            revision = str(((app.get("status") or {}).get("sync") or {}).get("revision") or "")
            if state is None:
                last = "the sync operation is not on the Application (replaced by another?)"
            else:
                phase = str(state.get("phase") or "Running")
                if phase in ("Failed", "Error"):
                    return ArgoWaitResult(
                        state="failed",
                        message=f"Argo CD sync {phase}: {failure_message(state)}",
                        revision=revision,
                    )
                if phase == "Succeeded" and sync == "Synced" and health == "Healthy":
                    return ArgoWaitResult(
                        state="ready",
                        message=f"Argo CD: Synced and Healthy at {revision[:12] or '?'}",
                        revision=revision,
                    )
                if phase == "Succeeded":
                    last = f"sync {sync}, health {health}" + (
                        f": {health_message}" if health_message else ""
                    )
                else:
                    last = f"sync operation {phase}: {state.get('message') or ''}".rstrip(": ")
            activity.heartbeat(last)
            if time.monotonic() >= deadline:
                return ArgoWaitResult(
                    state="pending",
                    message=f"not Synced and Healthy after {inp.timeout_seconds}s: {last}",
                    revision=revision,
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, POLL_MAX)
