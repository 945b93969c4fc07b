"""Names and values written into SQL that Peregrine builds for the analyst (notebook templates,
timelines): a column name becomes a quoted identifier, a value a quoted literal, so neither can
end the statement. What runs still goes through the engine's checks like any analyst's SQL."""

from __future__ import annotations


def identifier(name: str) -> str:
    """``name`` as a DuckDB identifier (double quotes doubled)."""
    if "\x00" in name:
        raise ValueError("a column name cannot hold a NUL character")
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """``text`` as a DuckDB string literal (single quotes doubled)."""
    if "\x00" in text:
        raise ValueError("a value cannot hold a NUL character")
    return "'" + text.replace("'", "''") + "'"


def artifact_source(artifact: str, source: str) -> str:
    """The second argument of ``flow()``/``hunt()`` for a result set."""
    return f"{artifact}/{source}" if source else artifact
