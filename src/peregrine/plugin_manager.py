"""Loads the hook implementations: the built-in plugin modules, then installed entry points.

Set ``PEREGRINE_TRACE_HOOKS=1`` to print every hook call (pluggy's tracing) to stderr.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys

import pluggy

from peregrine import hookspecs
from peregrine.engine.registry import Registry
from peregrine.plugins import BUILTIN_MODULES


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("peregrine")
    manager.add_hookspecs(hookspecs)
    for name in BUILTIN_MODULES:
        manager.register(importlib.import_module(name), name=name)
    manager.load_setuptools_entrypoints("peregrine")
    if os.environ.get("PEREGRINE_TRACE_HOOKS"):
        manager.trace.root.setwriter(sys.stderr.write)
        manager.enable_tracing()
    return manager


@functools.cache
def default_registry() -> Registry:
    """Every query plugin from every hook implementation; a duplicate name is an error."""
    registry = Registry()
    for plugins in plugin_manager().hook.register_query_plugins():
        for plugin in plugins:
            registry.add(plugin)
    return registry
