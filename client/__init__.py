"""Temporal plumbing that is neither a workflow nor an activity, shared by the CLI, the
worker, the watcher and the tests: the connection settings (``client.settings``), the
requests that reach the long-running workflows (``client.loops``), the worker's
telemetry (``client.telemetry``) and its interceptors (``client.keepalive``,
``client.failures``). Neither the CLI nor the worker owns it."""
