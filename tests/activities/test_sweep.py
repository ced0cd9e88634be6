"""The sweep's paged listing against the API peer: ``limit`` and ``continue``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.sweep import list_paged
from adapters.kube import KubeClient, Resource
from sandbox.kubeapi import KubeApiPeerThread

WIDGETS = Resource("example.org", "v1", "Widget", "widgets", True)


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeClient]:
    thread = KubeApiPeerThread()
    thread.start()
    thread.peer.register_kind("example.org", "v1", "Widget", "widgets")
    k = KubeClient(str(thread.peer.write_kubeconfig(tmp_path / "kubeconfig")))
    yield k
    k.close()
    thread.stop()


def widget(name: str, namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "example.org/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"size": len(name)},
    }


def test_a_kind_is_listed_per_namespace_in_pages_without_managed_fields(kube: KubeClient) -> None:
    names = [f"w{i:02d}" for i in range(7)]
    for name in names:
        kube.apply(WIDGETS, widget(name, "team-a"))
    kube.apply(WIDGETS, widget("other", "team-b"))

    items, requests = list_paged(kube, WIDGETS, "team-a", 3)

    assert [i["metadata"]["name"] for i in items] == names
    assert requests == 3  # 3 + 3 + 1
    assert all("managedFields" not in i["metadata"] for i in items)
    everywhere, one = list_paged(kube, WIDGETS, None, 100)
    assert (len(everywhere), one) == (8, 1)
