"""One module per command group; each adds its parsers and returns an exit code."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[Any]
