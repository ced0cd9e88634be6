"""The domain's error hierarchy.

Every error here is decided, so none is worth retrying as is: activities translate
them into non-retryable ``ApplicationError``s whose ``type`` is the class name, and
the CLI maps that type back to an exit code (``client.contract.EXIT_CODES``).
Transient failures are plain exceptions, which Temporal retries with backoff.
Messages name the file, object and field so a CI log alone tells the author what to
fix; they never carry secrets.
"""

from __future__ import annotations

from pydantic import BaseModel


class ErrorInfo(BaseModel):
    """A failure as a workflow reports it: the decided error's class name (or the
    exception's) and its message. Read out of activity failures by
    ``client.contract.error_info``."""

    type: str
    message: str


class TributaryError(Exception):
    """Base of every error we decide on purpose."""

    #: exit code of the CLI contract (``shared/CLI.md``)
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(TributaryError):
    """Unusable input: YAML, schema, names, refs, unknown spaces."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        obj: str | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.obj = obj
        self.field = field
        where = ": ".join(p for p in (file, obj, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class PolicyDenied(TributaryError):
    exit_code = 3


class CaptureConflict(TributaryError):
    """A revision a drift capture conflicts with: applying or approving it would put
    its value back over the captured live change (DESIGN.md, "Capture")."""

    exit_code = 4


class StaleVersion(TributaryError):
    """A unit moved on between read and write.

    Retrying the same write cannot succeed; the workflow re-reads and re-plans.
    """


class NotFound(TributaryError):
    exit_code = 2


class Rejected(TributaryError):
    """The cluster refused an object (a 4xx such as 422): its message says why."""

    exit_code = 2
