"""Tributary's own metrics: their exported names, labels and buckets.

They are recorded through the Temporal SDK's metric meter (``workflow.metric_meter()``
in workflows, where recording is skipped on replay; ``activity.metric_meter()`` in
activities; the runtime's meter in the worker) and exported with the SDK's own
metrics by the runtime's Prometheus exporter. The exporter is configured to add no
suffix and no prefix to these (``counters_total_suffix=False``, ``unit_suffix=False``),
so the names below are exactly the exported ones; the Grafana dashboard in
``deploy/`` uses them.

Pure: callers pass the meter they hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from temporalio.common import MetricMeter

PUBLISHES = "tributary_publishes_total"  # {space, action}: one per unit and publish
DRIFT_CHECKS = "tributary_drift_checks_total"  # {space}
DRIFTS_DETECTED = "tributary_drifts_detected_total"  # {space}: a drift not seen before
DRIFTS_CAPTURED = "tributary_drifts_captured_total"  # {space}
DRIFTS_REVERTED = "tributary_drifts_reverted_total"  # {space}: a revert requested
SYNC_PRS = "tributary_sync_prs_total"  # {space, action}: opened | updated | merged
DETECTION_LATENCY = "tributary_drift_detection_latency_seconds"  # {space}
APPLY_DURATION = "tributary_apply_duration_seconds"  # {space, state}
AWAITING_APPROVAL = "tributary_units_awaiting_approval"  # {space}

COUNTERS: Mapping[str, str] = {
    PUBLISHES: "Units published, by space and action (published, unchanged, merged, …)",
    DRIFT_CHECKS: "Drift checks completed, by space",
    DRIFTS_DETECTED: "Drifts detected (a drift a unit's loop had not seen before), by space",
    DRIFTS_CAPTURED: "Drifts captured as revisions, by space",
    DRIFTS_REVERTED: "Drifts reverted (a re-apply of the live revision requested), by space",
    SYNC_PRS: "Sync pull requests opened, updated and merged, by space",
}
HISTOGRAMS: Mapping[str, str] = {
    DETECTION_LATENCY: "Seconds from a live change (its field manager's time, or the check "
    "that first saw it) to its capture written, by space",
    APPLY_DURATION: "Seconds from an apply passing its gate to its end state, by space and state",
}
GAUGES: Mapping[str, str] = {
    AWAITING_APPROVAL: "Units whose apply waits at an approval gate, by space",
}
ALL: Sequence[str] = (*COUNTERS, *HISTOGRAMS, *GAUGES)

# Seconds: a capture follows a check within seconds when the watch sees the edit, and
# within one drift interval (minutes) when only the timer does. An apply waits for
# Crossplane to report Ready (seconds to minutes).
BUCKETS: Mapping[str, Sequence[float]] = {
    DETECTION_LATENCY: (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    APPLY_DURATION: (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
}


def count(meter: MetricMeter, name: str, labels: Mapping[str, str], value: int = 1) -> None:
    meter.create_counter(name, COUNTERS[name]).add(value, dict(labels))


def observe(meter: MetricMeter, name: str, labels: Mapping[str, str], seconds: float) -> None:
    meter.create_histogram_float(name, HISTOGRAMS[name], "s").record(
        max(seconds, 0.0), dict(labels)
    )


def observe_duration(
    meter: MetricMeter, name: str, labels: Mapping[str, str], duration: timedelta
) -> None:
    observe(meter, name, labels, duration.total_seconds())


def set_gauge(meter: MetricMeter, name: str, labels: Mapping[str, str], value: int) -> None:
    meter.create_gauge(name, GAUGES[name]).set(value, dict(labels))
