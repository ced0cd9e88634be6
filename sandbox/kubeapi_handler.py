"""The HTTP side of the API peer: kmock's ``KubernetesScaffold`` in front of our ``ObjectStore``.

Why the scaffold and not kmock's ``KubernetesEmulator``: the emulator mutates its store in
``_handle`` *before* routing, with semantics we must replace wholesale (naive dict merges, no
resourceVersion, no managedFields, an empty create response). Subclassing it would mean
undoing that on every request. So we keep what kmock does well — request parsing, the routing
DSL (ad-hoc reactions such as ``peer.emulator['get /version'] << 500`` still take priority),
the root listing, error rendering — and register one fallback reaction that serves every
resource URL from ``kubeapi_store``. Discovery (``/api/v1``, ``/apis``, ``/apis/{group}[/{v}]``)
is overridden to answer from the store's kinds in the format client-go and the Python dynamic
client expect (kmock's is close, but says ``groupVersion: "/v1"`` for the core group and cannot
carry listKind or the status subresource's own verbs).

Handlers return kmock ``Response`` objects (status + payload) rather than raising, so expected
API errors (404, 409 ...) do not pile up in kmock's error log; the store raises ``ApiError``.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import attrs
from kmock import KubernetesScaffold, Payload, Request, resource
from kmock._internal.rendering import Response  # not re-exported by kmock
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from sandbox.kubeapi_kinds import (
    KindInfo,
    Route,
    api_group,
    api_group_list,
    api_resource_list,
    is_valid_name,
    parse_route,
)
from sandbox.kubeapi_patch import PatchError, json_patch, merge_patch, strip_directives
from sandbox.kubeapi_select import FieldRequirement, Selector, SelectorError
from sandbox.kubeapi_status import ApiError, FaultRule, invalid, no_such_resource
from sandbox.kubeapi_store import NAMESPACES, ObjectStore, Watcher, as_version

# kmock 0.8's URL parser raises on a bare ".../namespaces" URL (the namespace list) before any
# hook of ours runs; such requests are built by us, without kmock's Kubernetes fields.
_KMOCK_UNPARSABLE = re.compile(r"/api/[^/]+/namespaces/?|/apis/[^/]+/[^/]+/namespaces/?")
# kubectl validates manifests against /openapi/v2, which it reads as protobuf. An empty message
# is a valid, empty OpenAPI document: kubectl then skips validation for kinds it does not find.
_OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what generateName uses: no vowels, no 0/1/3
_MERGE_PATCHES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


def _header(request: Request, name: str) -> str:
    wanted = name.lower()
    for key, value in request.headers.items():
        if key.lower() == wanted:
            return str(value)
    return ""


def _is_true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _dry_run(request: Request) -> bool:
    return "dryRun" in request.params


@attrs.define(kw_only=True)
class KubeApiEmulator(KubernetesScaffold):
    """kmock handler serving Kubernetes resource semantics from an ``ObjectStore``."""

    event_log_size: int = 10_000  # watch events kept for resuming from a resourceVersion
    # kmock records every request, and matches each new one by scanning that record through
    # every reaction's filter: the cost per request grows with it (50 ms at 1,000 entries).
    # By default only the request being served is kept; raise it to inspect traffic in a test.
    request_log_size: int = 1

    store: ObjectStore = attrs.field(init=False)
    _faults: list[FaultRule] = attrs.field(factory=list, init=False)
    _faults_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()  # kmock's discovery and not-found fallbacks
        self.store = ObjectStore(event_log_size=self.event_log_size)
        self.fallback[self._is_resource_request] << self._serve_resource
        self.fallback["get /openapi/v2"] << self._serve_openapi_v2

    # ---- faults (thread-safe: tests arm them from their own thread) --------------------------

    def add_fault(self, rule: FaultRule) -> FaultRule:
        with self._faults_lock:
            self._faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    def _take_fault(self, request: Request) -> FaultRule | None:
        method, path = request.method.value, request.url.path
        with self._faults_lock:
            rule = next((r for r in self._faults if r.matches(method, path)), None)
            if rule is not None:
                rule.hits += 1
                self._faults = [r for r in self._faults if not r.exhausted]
        return rule

    # ---- kmock hooks --------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if not _KMOCK_UNPARSABLE.fullmatch(raw_request.path):
            return await super().__call__(raw_request)
        body = await raw_request.read()
        request = Request(
            id=len(self._requests),
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            body=body,
            text=body.decode("utf-8", "replace"),
        )
        self._requests.append(request)
        return await self._handle(request)

    async def _handle(self, request: Request) -> aiohttp.web.StreamResponse:
        # Trim kmock's records (see request_log_size). Safe: kmock matches this request against
        # its reactions before its first await, so it is still in the record then.
        logs: list[list[Any]] = [self._requests, *self._errors]
        for log in logs:
            del log[: max(0, len(log) - max(1, self.request_log_size))]
        rule = self._take_fault(request)
        if rule is not None:
            return rule.response()
        return await super()._handle(request)

    async def _serve_server_version(self, request: Request) -> Payload:
        # kmock reports a k3s 1.26, which makes kubectl 1.3x warn about version skew.
        return _ok(
            {
                "major": "1",
                "minor": "33",
                "gitVersion": "v1.33.0",
                "gitTreeState": "clean",
                "goVersion": "go1.24",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        )

    def _get_resources(self) -> list[resource]:
        # Only kmock's root listing ("GET /") uses this; discovery proper is overridden below.
        return [resource(k.group, k.version, k.plural) for k in self.store.kinds()]

    async def _serve_apis(self, request: Request) -> Payload:
        groups: dict[str, set[str]] = {}
        for kind in self.store.kinds():
            if kind.group:
                groups.setdefault(kind.group, set()).add(kind.version)
        return _ok(api_group_list(groups))

    async def _serve_group(self, request: Request) -> Payload:
        group = request.resource.group if request.resource is not None else None
        versions = {k.version for k in self.store.kinds() if k.group == group}
        if not group or not versions:
            return no_such_resource().response()
        return _ok(api_group(group, versions))

    async def _serve_version(self, request: Request) -> Payload:
        res = request.resource
        group = res.group if res is not None and res.group else ""
        version = res.version if res is not None and res.version else ""
        kinds = [k for k in self.store.kinds() if (k.group, k.version) == (group, version)]
        if not kinds and group:
            return no_such_resource().response()
        return _ok(api_resource_list(f"{group}/{version}" if group else version, kinds))

    async def _serve_openapi_v2(self, request: Request) -> Payload:
        return Response(status=200, headers={"Content-Type": _OPENAPI_V2_PROTOBUF}, payload=b"")

    # ---- routing ------------------------------------------------------------------------------

    def _is_resource_request(self, request: Request) -> bool:
        return parse_route(request.url.path) is not None

    async def _serve_resource(self, request: Request) -> Payload:
        route = parse_route(request.url.path)
        assert route is not None  # guaranteed by _is_resource_request
        try:
            return self._dispatch(request, route)
        except ApiError as error:
            return error.response()

    def _dispatch(self, request: Request, route: Route) -> Response:
        method = request.method.value
        kind = self.store.kind(route.group, route.version, route.plural)
        if (
            kind is None
            or route.subresource not in (None, "status")
            or (route.subresource == "status" and not kind.status_subresource)
            # Namespaced objects live in a namespace; only list/watch may span all of them.
            or (kind.namespaced and route.namespace is None and (route.name or method != "GET"))
            or (not kind.namespaced and route.namespace is not None)
        ):
            raise no_such_resource()

        if method == "GET" and _is_true(request.params.get("watch")):
            return self._watch(request, route, kind)
        if method == "GET" and route.name is None:
            items, rv = self.store.list_objects(kind, self._selector(request, route))
            items, more = _page(items, request.params.get("limit"), request.params.get("continue"))
            metadata: dict[str, Any] = {"resourceVersion": str(rv)}
            if more:
                metadata["continue"] = more
            return Response(
                status=200,
                payload={
                    "apiVersion": kind.api_version,
                    "kind": kind.list_kind,
                    "metadata": metadata,
                    "items": items,
                },
            )
        if method == "POST" and route.name is None and route.subresource is None:
            return self._create(request, route, kind)
        if route.name is not None:
            if method == "GET":
                obj = self.store.get(kind, route.namespace, route.name)
                return Response(status=200, payload=as_version(obj, kind))
            if method == "PUT":
                return self._replace(request, route, kind, route.name)
            if method == "PATCH":
                return self._patch(request, route, kind, route.name)
            if method == "DELETE" and route.subresource is None:
                return self._delete(request, route, kind, route.name)
        raise ApiError(405, f"the server does not allow this method on the resource: {method}")

    # ---- reading requests ---------------------------------------------------------------------

    def _read_body(self, request: Request) -> Any:
        content_type = _header(request, "Content-Type")
        if not request.body:
            raise ApiError(400, "the request body is empty")
        if "protobuf" in content_type or "cbor" in content_type:
            # kubectl's typed commands (create namespace/configmap) send protobuf; use -f.
            raise ApiError(415, f"this API peer reads JSON and YAML bodies, not {content_type}")
        try:
            if "yaml" in content_type:  # apply configurations; JSON is YAML too
                return YAML(typ="safe", pure=True).load(request.body)
            return json.loads(request.body)
        except (ValueError, YAMLError) as error:
            raise ApiError(400, f"the request body cannot be decoded: {error}") from error

    def _manager(self, request: Request, *, required: bool = False) -> str:
        manager = request.params.get("fieldManager")
        if manager is None and required:
            raise ApiError(
                422,
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                "is required for apply patch",
            )
        # Without one the apiserver uses the User-Agent up to the first "/".
        manager = manager or _header(request, "User-Agent").split("/")[0] or "unknown"
        if len(manager) > 128:
            raise ApiError(422, "fieldManager: Too long: must have at most 128 bytes")
        return manager

    def _selector(self, request: Request, route: Route) -> Selector:
        try:
            selector = Selector.parse(
                route.namespace,
                request.params.get("labelSelector"),
                request.params.get("fieldSelector"),
            )
        except SelectorError as error:
            raise ApiError(400, str(error)) from error
        if route.name is not None:  # the old "watch one object" URL form
            by_name = FieldRequirement("metadata.name", True, route.name)
            selector = Selector(selector.namespace, selector.labels, (*selector.fields, by_name))
        return selector

    def _check_object(
        self, body: Any, kind: KindInfo, route: Route, *, generate: bool = False
    ) -> dict[str, Any]:
        """Validate a request object against the URL; fill in name/namespace where allowed."""
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON/YAML object")
        metadata = body.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise ApiError(400, "metadata must be an object")
        if generate and not metadata.get("name") and metadata.get("generateName"):
            suffix = "".join(random.choices(_NAME_ALPHABET, k=5))
            metadata["name"] = f"{metadata['generateName']}{suffix}"
        if route.name is not None:
            if metadata.get("name") not in (None, route.name):
                raise ApiError(
                    400,
                    f"the name of the object ({metadata['name']}) does not match the name on "
                    f"the URL ({route.name})",
                )
            metadata["name"] = route.name
        name = str(metadata.get("name") or "")
        # The apiserver answers a wrong apiVersion/kind with 400; we use 422 like other
        # invalid objects, so clients treat them all as "fix your input".
        for field_path, expected in (("apiVersion", kind.api_version), ("kind", kind.kind)):
            if body.get(field_path) != expected:
                value = body.get(field_path)
                raise invalid(
                    kind, name, field_path, f"Invalid value: {value!r}: must be {expected}"
                )
        if not name:
            raise invalid(
                kind, name, "metadata.name", "Required value: name or generateName is required"
            )
        if not is_valid_name(name, label=kind == NAMESPACES):
            raise invalid(
                kind,
                name,
                "metadata.name",
                f"Invalid value: {name!r}: a lowercase RFC 1123 name must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        if kind.namespaced:
            if metadata.get("namespace") not in (None, "", route.namespace):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request",
                )
            metadata["namespace"] = route.namespace
        else:
            metadata.pop("namespace", None)
        return body

    # ---- writes -------------------------------------------------------------------------------

    def _create(self, request: Request, route: Route, kind: KindInfo) -> Response:
        body = self._check_object(self._read_body(request), kind, route, generate=True)
        created = self.store.create(
            kind, body, manager=self._manager(request), dry_run=_dry_run(request)
        )
        return Response(status=201, payload=as_version(created, kind))

    def _replace(self, request: Request, route: Route, kind: KindInfo, name: str) -> Response:
        body = self._check_object(self._read_body(request), kind, route)
        replaced = self.store.update(
            kind,
            route.namespace,
            name,
            lambda old: body,
            subresource=route.subresource or "",
            manager=self._manager(request),
            dry_run=_dry_run(request),
        )
        return Response(status=200, payload=as_version(replaced, kind))

    def _patch(self, request: Request, route: Route, kind: KindInfo, name: str) -> Response:
        content_type = _header(request, "Content-Type").split(";")[0].strip()
        patch = self._read_body(request)
        if content_type == "application/apply-patch+yaml":
            config = self._check_object(patch, kind, route)
            obj, created = self.store.apply(
                kind,
                route.namespace,
                name,
                config,
                subresource=route.subresource or "",
                manager=self._manager(request, required=True),
                force=_is_true(request.params.get("force")),
                dry_run=_dry_run(request),
            )
            return Response(status=201 if created else 200, payload=as_version(obj, kind))
        if content_type not in (*_MERGE_PATCHES, "application/json-patch+json"):
            raise ApiError(415, f"the body of the request was in an unknown format: {content_type}")

        def change(old: dict[str, Any]) -> dict[str, Any]:
            try:
                if content_type in _MERGE_PATCHES:
                    patched = merge_patch(old, strip_directives(patch))
                else:
                    patched = json_patch(old, patch)
            except PatchError as error:
                raise ApiError(422, str(error)) from error
            return self._check_object(patched, kind, route)

        patched = self.store.update(
            kind,
            route.namespace,
            name,
            change,
            subresource=route.subresource or "",
            manager=self._manager(request),
            dry_run=_dry_run(request),
        )
        return Response(status=200, payload=as_version(patched, kind))

    def _delete(self, request: Request, route: Route, kind: KindInfo, name: str) -> Response:
        options = (self._read_body(request) if request.body else None) or {}
        obj, held = self.store.delete(
            kind,
            route.namespace,
            name,
            preconditions=options.get("preconditions") or {},
            dry_run=_dry_run(request) or bool(options.get("dryRun")),
        )
        if held:  # finalizers keep it, marked for deletion: answer with the object
            return Response(status=200, payload=as_version(obj, kind))
        details = {
            "name": name,
            "group": kind.group,
            "kind": kind.plural,
            "uid": obj["metadata"]["uid"],
        }
        return Response(
            status=200,
            payload={
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            },
        )

    # ---- watches ------------------------------------------------------------------------------

    def _watch(self, request: Request, route: Route, kind: KindInfo) -> Response:
        selector = self._selector(request, route)
        since = request.params.get("resourceVersion") or "0"
        timeout = request.params.get("timeoutSeconds")
        if not since.isdigit() or (timeout is not None and not timeout.isdigit()):
            raise ApiError(400, "resourceVersion and timeoutSeconds must be non-negative integers")
        watcher, initial = self.store.watch(
            kind,
            selector,
            asyncio.get_running_loop(),
            since=None if since == "0" else int(since),
            initial_events=_is_true(request.params.get("sendInitialEvents")),
        )
        deadline = time.monotonic() + int(timeout) if timeout else None
        return Response(
            status=200,
            headers={"Content-Type": "application/json"},
            payload=self._stream(watcher, initial, deadline),
        )

    async def _stream(
        self, watcher: Watcher | None, initial: list[dict[str, Any]], deadline: float | None
    ) -> AsyncIterator[Payload]:
        yield b""  # send the headers now: a real apiserver confirms the watch at once
        try:
            for event in initial:
                yield event
            while watcher is not None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    # Only the wait is bounded: a timeout around the yield would cancel kmock's
                    # socket writes instead of ending the stream cleanly.
                    item = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    return
                if item is None:
                    return  # the peer is stopping or going away for a while
                rendered = watcher.render(item)
                if rendered is not None:
                    yield rendered
        finally:
            if watcher is not None:
                self.store.unwatch(watcher)


def _ok(payload: Payload) -> Response:
    """Always an explicit 200: kmock copies a returned Response's status onto the
    reaction it came from, so once a reaction has answered 404 (an unknown group),
    a plain payload returned later would go out as 404 too."""
    return Response(status=200, payload=payload)


def _page(
    items: list[dict[str, Any]], limit: str | None, token: str | None
) -> tuple[list[dict[str, Any]], str]:
    """A list's chunk (``limit`` and ``continue``): items come sorted by (namespace,
    name), and the token is the last key sent, so a chunk never repeats or skips an
    object that existed throughout (unlike a real server, no snapshot is kept)."""
    if token:
        try:
            after = tuple(json.loads(token))
        except (ValueError, TypeError) as e:
            raise ApiError(400, f"invalid continue token: {token!r}") from e
        items = [i for i in items if _key(i) > after]
    if not limit or not limit.isdigit() or int(limit) <= 0 or len(items) <= int(limit):
        return items, ""
    chunk = items[: int(limit)]
    return chunk, json.dumps(list(_key(chunk[-1])))


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
