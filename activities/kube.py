"""Kubernetes activities: server-side apply, wait for Ready, delete."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities._errors import decided
from adapters.kube import KubeClient, Resource
from domain.apply import Readiness, readiness, waiting_message
from domain.errors import PolicyDenied, Rejected
from domain.gates import object_problem, owner_problem, with_owner
from domain.kube import (
    KubeApplyInput,
    KubeApplyResult,
    KubeDeleteInput,
    KubeDeleteResult,
    KubeWaitInput,
    KubeWaitResult,
    ObjectRef,
)

XRD_API_VERSION = "apiextensions.crossplane.io/v1"
XRD_KIND = "CompositeResourceDefinition"
COMPOSITION_KIND = "Composition"
ESTABLISH_SECONDS = 60
WATCH_SLICE_SECONDS = 10


AppliedHook = Callable[[Resource, dict[str, Any], str, str], None]


class KubeActivities:
    def __init__(self, kube: KubeClient, on_applied: AppliedHook | None = None) -> None:
        self.kube = kube
        # Tells this worker's watch about an object the moment it is applied, so a
        # live edit right after an apply is not missed while the watch catches up.
        self.on_applied = on_applied

    @activity.defn(name="kube.apply")
    @decided
    def apply(self, inp: KubeApplyInput) -> KubeApplyResult:
        data = inp.data
        if inp.gates is not None:
            # Before discovery: a kind the space may not apply never gets its XRD installed.
            self._check_gates(inp, data, namespaced=None)
        res = self._served(str(data["apiVersion"]), str(data["kind"]), inp.xrds)
        self._install_compositions(inp.compositions)
        if inp.gates is not None:
            self._check_gates(inp, data, namespaced=res.namespaced)
        if inp.space:
            # A forced server-side apply takes every field over: read the live object
            # first and refuse one another space owns; label ours as ours.
            meta = data.get("metadata") or {}
            namespace = (meta.get("namespace") or "default") if res.namespaced else None
            problem = owner_problem(inp.space, self.kube.get(res, str(meta["name"]), namespace))
            if problem:
                raise PolicyDenied(problem)
            data = with_owner(inp.space, data)
        body = self.kube.apply(res, data)
        if self.on_applied is not None and inp.space:
            self.on_applied(res, body, inp.space, inp.unit)
        meta = body.get("metadata", {})
        return KubeApplyResult(
            ref=_ref(res, data),
            generation=int(meta.get("generation") or 1),
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    @activity.defn(name="kube.wait_ready")
    @decided
    def wait_ready(self, inp: KubeWaitInput) -> KubeWaitResult:
        """Watch the object (no polling loop) until Ready, failed, or the timeout.

        A transient Synced=False not yet reported (``inp.seen``) returns "waiting" at
        once so the workflow can show it; one already reported is waited through.
        """
        res = self._resource(inp.ref)
        deadline = time.monotonic() + inp.timeout_seconds
        last = "waiting"

        def seen(state: Readiness) -> KubeWaitResult | None:
            nonlocal last
            if state.state in ("ready", "failed"):
                return KubeWaitResult(state=state.state, message=state.message)
            if state.state == "waiting":
                if state.message != inp.seen:
                    return KubeWaitResult(state="waiting", message=state.message)
                last = state.message
                activity.heartbeat(waiting_message(state.message))
            else:
                last = state.message
                activity.heartbeat(last)
            return None

        while True:
            obj = self.kube.get(res, inp.ref.name, inp.ref.namespace)
            done = seen(readiness(obj, inp.generation))
            if done is not None:
                return done
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return KubeWaitResult(
                    state="pending",
                    message=f"not Ready after {inp.timeout_seconds}s: {last}",
                )
            rv = str((obj or {}).get("metadata", {}).get("resourceVersion") or "") or None
            for _type, event_obj in self.kube.watch_object(
                res,
                inp.ref.name,
                inp.ref.namespace,
                resource_version=rv,
                timeout_seconds=max(1, min(WATCH_SLICE_SECONDS, int(remaining))),
            ):
                done = seen(readiness(event_obj, inp.generation))
                if done is not None:
                    return done

    @activity.defn(name="kube.delete")
    @decided
    def delete(self, inp: KubeDeleteInput) -> KubeDeleteResult:
        res = self._resource(inp.ref)
        if inp.space:
            live = self.kube.get(res, inp.ref.name, inp.ref.namespace)
            problem = owner_problem(inp.space, live)
            if problem:
                raise PolicyDenied(problem.replace("may not apply over it", "may not delete it"))
        existed = self.kube.delete(res, inp.ref.name, inp.ref.namespace)
        deadline = time.monotonic() + inp.timeout_seconds
        # Finalizers may hold the object for a while; it is deleted when it is gone.
        while self.kube.get(res, inp.ref.name, inp.ref.namespace) is not None:
            activity.heartbeat("waiting for finalizers")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{inp.ref.kind}/{inp.ref.name} still exists after delete")
            time.sleep(1)
        return KubeDeleteResult(existed=existed)

    def _check_gates(
        self, inp: KubeApplyInput, data: dict[str, Any], *, namespaced: bool | None
    ) -> None:
        gates = inp.gates
        assert gates is not None
        if gates.destination and namespaced is None:
            current = self.kube.context_name()
            if current != gates.destination:
                raise PolicyDenied(
                    f"space {inp.space} applies to destination {gates.destination}, but this "
                    f"worker's cluster is {current or '(no context)'}"
                )
        problem = object_problem(
            inp.space, gates.kinds, gates.namespaces, data, namespaced=namespaced
        )
        if problem:
            raise PolicyDenied(problem)

    # ---- discovery ------------------------------------------------------------------

    def _resource(self, ref: ObjectRef) -> Resource:
        res = self.kube.resource(ref.api_version, ref.kind)
        if res is None:
            raise Rejected(f"the cluster does not serve {ref.kind} ({ref.api_version})")
        return res

    def _served(self, api_version: str, kind: str, xrds: list[dict[str, Any]]) -> Resource:
        """The claim's resource; installs its XRD first when the cluster lacks the kind.

        Crossplane turns an XRD into the claim's CRD, as it would for a platform
        team's `kubectl apply`; we wait (heartbeating) until discovery serves it.
        """
        res = self.kube.resource(api_version, kind)
        if res is not None:
            return res
        if not xrds:
            raise Rejected(
                f"the cluster does not serve {kind} ({api_version}) and no XRD in the "
                "space's schemas defines it"
            )
        xrd_res = self.kube.resource(XRD_API_VERSION, XRD_KIND)
        if xrd_res is None:
            raise Rejected(
                f"the cluster does not serve {kind} ({api_version}) and has no Crossplane "
                "to install its XRD"
            )
        for xrd in xrds:
            self.kube.apply(xrd_res, _installable(xrd), force=False)
        deadline = time.monotonic() + ESTABLISH_SECONDS
        while time.monotonic() < deadline:
            activity.heartbeat(f"waiting for Crossplane to serve {kind}")
            res = self.kube.resource(api_version, kind)
            if res is not None:
                return res
            time.sleep(0.5)
        raise RuntimeError(f"{kind} ({api_version}) not served {ESTABLISH_SECONDS}s after its XRD")

    def _install_compositions(self, compositions: list[dict[str, Any]]) -> None:
        """The space's Compositions for the claim's composite, where the cluster has none of
        that name (one the platform team installed is never overwritten)."""
        if not compositions:
            return
        res = self.kube.resource(XRD_API_VERSION, COMPOSITION_KIND)
        if res is None:
            return  # no Crossplane to compose with; the claim will say so
        for doc in compositions:
            name = str((doc.get("metadata") or {}).get("name") or "")
            if name and self.kube.get(res, name, None) is None:
                self.kube.apply(res, _installable(doc), force=False)


def _installable(xrd: dict[str, Any]) -> dict[str, Any]:
    meta = xrd.get("metadata", {})
    return {**xrd, "metadata": {k: v for k, v in meta.items() if k in ("name", "labels")}}


def _ref(res: Resource, data: dict[str, Any]) -> ObjectRef:
    meta = data.get("metadata", {})
    namespace = (meta.get("namespace") or "default") if res.namespaced else None
    return ObjectRef(
        api_version=res.api_version, kind=res.kind, name=meta["name"], namespace=namespace
    )
