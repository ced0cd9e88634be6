"""The Kubernetes adapter: the official client, behind the few calls the arrows need.

Claims are custom resources of kinds that appear at run time (Crossplane makes a
CRD per XRD), so requests go through ``ApiClient.call_api`` with paths resolved by
discovery, instead of the generated per-kind methods. Failures are sorted here:
a connection problem or a 5xx/429 is ``KubeUnavailable`` (retried with backoff by
Temporal); any other 4xx is ``Rejected`` (decided, not retried).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from domain.errors import Rejected
from domain.naming import kubernetes_namespace_problem

FIELD_MANAGER = "tributary"
_UNSAFE_NAME = re.compile(r"[/%?#\\\s\x00-\x1f]|^$")
REQUEST_TIMEOUT = 30


class KubeUnavailable(RuntimeError):
    """The API server could not be reached or answered 5xx/429: try again later."""


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, name: str | None = None, namespace: str | None = None) -> str:
        # Names and namespaces come from commits and live edits: none may reshape
        # the URL ("team-a/../kube-system", "x?dryRun=All").
        if self.namespaced and namespace and kubernetes_namespace_problem(namespace):
            raise Rejected(f"metadata.namespace: {kubernetes_namespace_problem(namespace)}")
        if name is not None and (_UNSAFE_NAME.search(name) or name in (".", "..")):
            raise Rejected(f"metadata.name: {name!r} cannot be part of an API path")
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


class KubeClient:
    """One cluster, reached through a kubeconfig (``None``: ``$KUBECONFIG``/default)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        self._kubeconfig = kubeconfig
        self._context = context
        self._api: client.ApiClient | None = None
        self._lock = threading.Lock()
        self._discovered: dict[tuple[str, str], Resource] = {}

    @property
    def api(self) -> client.ApiClient:
        # Built on first use: the worker starts before a cluster may exist.
        with self._lock:
            if self._api is None:
                self._api = config.new_client_from_config(
                    config_file=self._kubeconfig, context=self._context
                )
            return self._api

    def context_name(self) -> str:
        """The kubeconfig context this client talks to (a space's destination)."""
        if self._context:
            return self._context
        try:
            _contexts, active = config.list_kube_config_contexts(config_file=self._kubeconfig)
        except config.ConfigException:
            return ""
        return str((active or {}).get("name") or "")

    def close(self) -> None:
        if self._api is not None:
            self._api.close()

    # ---- requests ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:
        """``(status, body)`` for a 2xx or 404; raises otherwise."""
        api = self.api
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            serialized = api.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or [],
                header_params=headers,
                body=None,
                auth_settings=["BearerToken"],
            )
            _method, url, header_params, _body, post_params = serialized
            response = api.call_api(
                method,
                url,
                header_params=header_params,
                # The client serialises JSON bodies itself; an apply (YAML content
                # type) goes as text, and JSON is valid YAML.
                body=body if body is None or content_type.endswith("json") else json.dumps(body),
                post_params=post_params,
                _request_timeout=REQUEST_TIMEOUT,
            )
            response.read()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KubeUnavailable(f"{method} {path}: {e}") from e
        except ApiException as e:  # raised for retries exhausted on Retry-After answers
            raise KubeUnavailable(f"{method} {path}: {e.status} {e.reason}") from e
        status = int(response.status)
        data: dict[str, Any] = json.loads(response.data) if response.data else {}
        if 200 <= status < 300 or status == 404:
            return status, data
        message = data.get("message") or response.reason or "no message"
        if status >= 500 or status == 429:
            raise KubeUnavailable(f"{method} {path}: {status} {message}")
        raise Rejected(
            f"{method} {path} was rejected ({status} {data.get('reason', '')}): {message}"
        )

    # ---- discovery --------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource | None:
        """The resource serving ``kind`` at ``api_version``, or None if not served (yet)."""
        key = (api_version, kind)
        if key in self._discovered:
            return self._discovered[key]
        group, _, version = api_version.rpartition("/")
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        status, body = self.request("GET", path)
        if status == 404:
            return None
        for item in body.get("resources", []):
            if item.get("kind") == kind and "/" not in item.get("name", ""):
                found = Resource(group, version, kind, item["name"], bool(item.get("namespaced")))
                self._discovered[key] = found
                return found
        return None

    # ---- objects ------------------------------------------------------------------

    def apply(self, res: Resource, obj: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply of ``obj`` as field manager ``tributary``."""
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or ("default" if res.namespaced else None)
        query = [("fieldManager", FIELD_MANAGER)]
        if force:
            query.append(("force", "true"))
        _, body = self.request(
            "PATCH",
            res.path(meta["name"], namespace),
            query=query,
            body=obj,
            content_type="application/apply-patch+yaml",
        )
        return body

    def get(self, res: Resource, name: str, namespace: str | None) -> dict[str, Any] | None:
        status, body = self.request("GET", res.path(name, namespace))
        return None if status == 404 else body

    def delete(self, res: Resource, name: str, namespace: str | None) -> bool:
        """Delete; False when it was already gone."""
        status, _ = self.request("DELETE", res.path(name, namespace))
        return status != 404

    def list_kind(self, res: Resource) -> tuple[list[dict[str, Any]], str]:
        """Every object of a kind in every namespace, and the list's resourceVersion."""
        _, body = self.request("GET", res.path())
        return list(body.get("items") or []), str(
            (body.get("metadata") or {}).get("resourceVersion") or ""
        )

    def watch_kind(
        self, res: Resource, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events for every object of a kind until the server ends the watch."""
        custom = client.CustomObjectsApi(self.api)
        w = watch.Watch()
        try:
            for event in w.stream(
                custom.list_cluster_custom_object,
                group=res.group,
                version=res.version,
                plural=res.plural,
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                _request_timeout=timeout_seconds + 10,
            ):
                yield str(event["type"]), dict(event["object"])
        except ApiException as e:
            if e.status == 410:
                return
            raise KubeUnavailable(f"watch {res.plural}: {e.status} {e.reason}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KubeUnavailable(f"watch {res.plural}: {e}") from e
        finally:
            w.stop()

    def watch_object(
        self,
        res: Resource,
        name: str,
        namespace: str | None,
        *,
        resource_version: str | None,
        timeout_seconds: int,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events for one object until the server ends the watch (``timeout_seconds``)."""
        custom = client.CustomObjectsApi(self.api)
        kwargs: dict[str, Any] = {
            "group": res.group,
            "version": res.version,
            "plural": res.plural,
            "field_selector": f"metadata.name={name}",
            "timeout_seconds": timeout_seconds,
            "_request_timeout": timeout_seconds + 10,
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        func: Callable[..., Any]
        if res.namespaced:
            func = custom.list_namespaced_custom_object
            kwargs["namespace"] = namespace or "default"
        else:
            func = custom.list_cluster_custom_object
        w = watch.Watch()
        try:
            for event in w.stream(func, **kwargs):
                yield str(event["type"]), dict(event["object"])
        except ApiException as e:
            if e.status == 410:  # too old: the caller re-reads and watches again
                return
            if e.status is not None and (e.status >= 500 or e.status == 429):
                raise KubeUnavailable(f"watch {res.plural}/{name}: {e.status} {e.reason}") from e
            raise Rejected(f"watch {res.plural}/{name} was rejected: {e.status} {e.reason}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KubeUnavailable(f"watch {res.plural}/{name}: {e}") from e
        finally:
            w.stop()
