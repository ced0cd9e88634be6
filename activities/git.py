"""Git activities: fetch an authoring repo at a commit into the worker's cache."""

from __future__ import annotations

from temporalio import activity

from activities._errors import decided
from adapters.source import SourceCache
from domain.repos import CheckoutInput, CheckoutResult, NewerCommitsInput, NewerCommitsResult


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

    @activity.defn(name="git.newer_commits")
    @decided
    def newer_commits(self, inp: NewerCommitsInput) -> NewerCommitsResult:
        """Which of the commits last published descend from the one being published:
        a publish of an older commit must not undo what a newer one published."""
        return NewerCommitsResult(newer=self.cache.descendants(inp.source, inp.commits))
