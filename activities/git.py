"""Git activities: fetch an authoring repo at a commit into the worker's cache."""

from __future__ import annotations

from temporalio import activity

from activities._errors import decided
from activities.source import SourceCache
from domain.messages import CheckoutInput, CheckoutResult


class GitActivities:
    def __init__(self, cache: SourceCache) -> None:
        self.cache = cache

    @activity.defn(name="git.checkout")
    @decided
    def checkout(self, inp: CheckoutInput) -> CheckoutResult:
        activity.heartbeat("fetching")
        result = self.cache.checkout(inp.source)
        self.cache.tree(inp.source)
        return result
