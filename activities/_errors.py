"""Turn decided domain errors into non-retryable Temporal failures."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError

from domain.errors import TributaryError

P = ParamSpec("P")
R = TypeVar("R")


def decided(fn: Callable[P, R]) -> Callable[P, R]:
    """Raise ``TributaryError`` as ``ApplicationError(type=<class>, non_retryable)``.

    Anything else propagates unchanged and is retried with the call's backoff.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TributaryError as e:
            raise ApplicationError(e.message, type=type(e).__name__, non_retryable=True) from e

    return wrapper
