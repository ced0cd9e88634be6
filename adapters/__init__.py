"""Adapters: the code that talks to one outside system, and defines no activity.

An activity module (``activities/``) reads as "the activities of one system"; what it
needs to reach that system lives here, so a reader follows an arrow as
``workflows/`` → ``activities/`` → ``adapters/``. Adapters are synchronous and
blocking on purpose: they run inside sync activities on the worker's thread pool,
except the Claim watcher (``adapters/watcher.py``), which the worker starts beside its
pollers and which signals the drift loops.
"""
