"""Activity options shared by the workflows: every call has a timeout and a retry policy."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Transient failures (network, a locked database, a busy API) back off up to a
# minute between attempts; decided errors are non-retryable and skip all this.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=10,
)

GIT_TIMEOUT = timedelta(minutes=10)
GIT_HEARTBEAT = timedelta(minutes=2)
RENDER_TIMEOUT = timedelta(minutes=3)
POLICY_TIMEOUT = timedelta(minutes=2)
AUTHORITY_TIMEOUT = timedelta(minutes=1)

# Plans of one space, the first included, when a unit moved on between read and write.
MAX_REPLANS = 5
