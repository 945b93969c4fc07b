"""Every extension point of Peregrine, in one place.

Built-in plugins use these same hooks (see ``peregrine/plugins/``), so a third-party package is no
different from a built-in one: it declares a ``peregrine`` entry point whose module implements
some of these hooks with ``@peregrine.hookimpl``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from peregrine.engine.registry import Plugin

hookspec = pluggy.HookspecMarker("peregrine")
hookimpl = pluggy.HookimplMarker("peregrine")


@hookspec
def register_query_plugins() -> Iterable[Plugin]:  # type: ignore[empty-body]
    """Return table and scalar plugins for the query engine."""
