"""Stamps on the one-client path, for ``trace_one_client.py`` (never loaded otherwise).

Python imports ``sitecustomize`` at start-up from ``sys.path``; ``trace_one_client.py`` puts this
directory on the ``PYTHONPATH`` of the server and agent processes it starts, with
``PEREGRINE_TRACE_DIR`` set. Each named function then writes a line (wall clock, process id,
event, a few details) to ``<dir>/<pid>.jsonl`` when it is entered (``name>``) and left
(``name<``). Query workers run ``python -I``, which ignores ``PYTHONPATH``: they are timed from
the agent's side (``iq.*``). Functions are wrapped right after their module is imported, so a
module that moved or a function renamed is skipped (``patch-failed``), never an error.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import inspect
import json
import os
import sys
import time
from typing import Any

OUT = os.environ.get("PEREGRINE_TRACE_DIR")
_fd: int | None = None


def stamp(event: str, **details: Any) -> None:
    global _fd
    if OUT is None:
        return
    if _fd is None:
        _fd = os.open(f"{OUT}/{os.getpid()}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    line = {"t": time.time(), "e": event, "p": os.getpid(), **details}
    os.write(_fd, (json.dumps(line, default=str) + "\n").encode())


def wrap(owner: Any, name: str, label: str, details=None) -> None:
    """Stamp ``label>`` and ``label<`` around ``owner.name`` (a function or coroutine)."""
    original = getattr(owner, name)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def traced_async(*args, **kwargs):
            info = details(*args, **kwargs) if details else {}
            stamp(label + ">", **info)
            try:
                return await original(*args, **kwargs)
            finally:
                stamp(label + "<", **info)

        setattr(owner, name, traced_async)
        return

    @functools.wraps(original)
    def traced(*args, **kwargs):
        info = details(*args, **kwargs) if details else {}
        stamp(label + ">", **info)
        try:
            return original(*args, **kwargs)
        finally:
            stamp(label + "<", **info)

    setattr(owner, name, traced)


def _messages(_session, run) -> dict[str, Any]:
    return {"m": [f"{type(m).__name__}:{getattr(m, 'seq', '')}" for m in run]}


def _patch_agent(module) -> None:
    original = module.Agent._handle

    async def handle(self, ws, message):
        stamp("agent.recv", m=type(message).__name__, f=getattr(message, "flow_id", ""))
        return await original(self, ws, message)

    module.Agent._handle = handle


def _patch_outbox(module) -> None:
    original = module.Outbox.take

    def take(self, pending, now):
        frames, count, held = original(self, pending, now)
        if count or held is not None:
            stamp("outbox.take", n=count, held=held, sizes=[len(f) for f in frames])
        return frames, count, held

    module.Outbox.take = take


def _patch_events_route(module) -> None:
    name = "changes" if hasattr(module, "changes") else "_changes"  # before 2026-12-03
    original = getattr(module, name)

    async def changes(*args, **kwargs):
        async for item in original(*args, **kwargs):
            stamp("sse.yield", n=len(item))
            yield item

    setattr(module, name, changes)


PATCHES = {
    "peregrine.services.collections": lambda m: [
        wrap(m.CollectionService, "create", "svc.create"),
        wrap(m.CollectionService, "prepare", "svc.prepare"),
        wrap(m.CollectionService, "store", "svc.store"),
    ],
    "peregrine.services.hunts": lambda m: [
        wrap(m.HuntManager, "create", "hunt.create"),
        wrap(m.HuntManager, "start", "hunt.start"),
        wrap(m.HuntManager, "_schedule", "hunt.schedule"),
    ],
    "peregrine.server.session": lambda m: [
        wrap(m.AgentSession, "_store", "sess.store", _messages),
        wrap(m.AgentSession, "send", "sess.send"),
    ],
    "peregrine.server.ingest": lambda m: [
        wrap(m.Ingestor, "flow_messages", "ing.flow_messages"),
        wrap(m.Ingestor, "_record_run", "ing.record"),
    ],
    "peregrine.services.events": lambda m: [
        wrap(m.ServerEvents, "flow_changed", "ev.flow_changed"),
    ],
    "peregrine.api.deps": lambda m: [wrap(m.ApiContext, "record", "audit.record")],
    "peregrine.agent.agent": _patch_agent,
    "peregrine.agent.outbox": _patch_outbox,
    "peregrine.agent.spool": lambda m: [
        wrap(m.Spool, "start_flow", "spool.start_flow"),
        wrap(m.Spool, "append", "spool.append"),
        *(
            [wrap(m.Spool, "append_all", "spool.append_all")]
            if hasattr(m.Spool, "append_all")
            else []
        ),
        wrap(m.Spool, "finish_flow", "spool.finish_flow"),
        wrap(m.Spool, "ack", "spool.ack"),
    ],
    "peregrine.agent.collection": lambda m: [
        wrap(m.CollectionJob, "run", "job.run"),
        wrap(m.CollectionJob, "_collect", "job.collect"),
    ],
    "peregrine.engine.worker": lambda m: [
        wrap(m.IsolatedQuery, "__init__", "iq.init"),
        wrap(m.IsolatedQuery, "_read_header", "iq.header"),
        wrap(m.IsolatedQuery, "_finish", "iq.finish"),
    ],
    "peregrine.engine.spare": lambda m: [
        wrap(m.SpareWorkers, "take", "spare.take"),
        wrap(m, "start_worker", "spawn"),
    ],
    "peregrine.api.routes.events": _patch_events_route,
}


class _Finder(importlib.abc.MetaPathFinder):
    """Patches a module of ``PATCHES`` once it has been executed."""

    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module, _execute=execute, _name=name):
            _execute(module)
            try:
                PATCHES[_name](module)
            except Exception as exc:  # a moved function: no stamps there, no failure
                stamp("patch-failed", m=_name, error=repr(exc))

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if OUT:
    sys.meta_path.insert(0, _Finder())
