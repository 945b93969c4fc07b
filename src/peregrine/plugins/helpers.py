"""(placeholder: being written)"""

from collections.abc import Iterable

from peregrine.engine.registry import Plugin
from peregrine.hookspecs import hookimpl


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return []
