"""Temporal client code that the CLI, the worker, the watcher and the tests share: the
connection settings (``client.settings``) and the requests that reach the long-running
workflows (``client.loops``). Neither the CLI nor the worker owns it."""
