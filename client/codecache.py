"""Workflow code compiled once per worker, not once per workflow run.

The workflow sandbox executes a workflow's module afresh for every run it creates:
each run the worker starts, and each evicted run it replays (a covered drift loop
that wakes once an hour is usually no longer in the cache). The import system gives
it a code object from the module's ``.pyc`` — or, when there is none
(``PYTHONDONTWRITEBYTECODE``, a source checkout), compiles the source again: about
5 ms of the 9 ms it took to create a drift loop's instance (profiled on replays of
``tests/fixtures/drift_histories``). Here the code object of each of our workflow
modules is kept in memory, keyed by file and modification time; nothing is written
to disk and every other import is untouched.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType

# What the sandbox re-executes per run: the workflow modules and their package.
PACKAGES = ("workflows",)


class _CachedSourceLoader(importlib.machinery.SourceFileLoader):
    """A source loader that compiles (or unmarshals) each file version once."""

    codes: dict[tuple[str, int, int], CodeType] = {}

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        code = self.codes.get(key)
        if code is None:
            found = super().get_code(fullname)
            if found is None:  # pragma: no cover - a source file always has code
                raise ImportError(f"no code for {fullname}", name=fullname)
            code = self.codes[key] = found
        return code


class WorkflowCodeCache(importlib.abc.MetaPathFinder):
    """Finds our workflow modules as the path finder does, with a caching loader."""

    def __init__(self, packages: Sequence[str] = PACKAGES) -> None:
        self.packages = tuple(packages)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] not in self.packages:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        loader = spec.loader if spec else None
        if spec is None or type(loader) is not importlib.machinery.SourceFileLoader:
            return spec
        spec.loader = _CachedSourceLoader(loader.name, loader.path)
        return spec


def install(packages: Sequence[str] = PACKAGES) -> WorkflowCodeCache:
    """Put the cache first on ``sys.meta_path`` (once per process)."""
    for finder in sys.meta_path:
        if isinstance(finder, WorkflowCodeCache):
            return finder
    finder = WorkflowCodeCache(packages)
    sys.meta_path.insert(0, finder)
    return finder
