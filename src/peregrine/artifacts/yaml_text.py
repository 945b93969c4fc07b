"""An artifact written back as YAML an analyst can edit: multi-line text (queries,
descriptions) as literal blocks, keys in the format's order, empty fields left out."""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from peregrine.artifacts.model import Artifact

#: Fields the loader fills in that are not part of what was written.
_NOT_WRITTEN = ("origin",)
#: The order people write an artifact in; other fields follow.
_ORDER = ("name", "description", "author", "type", "precondition", "parameters", "resources",
          "required_permissions", "sources", "column_types")  # fmt: skip


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    if style:
        value = "\n".join(line.rstrip() for line in value.split("\n"))
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    """A struct's fields without the null ones (the format's defaults); values inside a field
    (a JSON default holding a null) are kept as they are."""
    return {k: v for k, v in data.items() if v is not None}


def artifact_yaml(artifact: Artifact) -> str:
    data = msgspec.to_builtins(artifact)
    for key in _NOT_WRITTEN:
        data.pop(key, None)
    data = {k: data[k] for k in _ORDER if k in data} | data
    for key in ("parameters", "sources"):
        data[key] = [_fields(item) for item in data.get(key) or []]
    data = {k: v for k, v in data.items() if v not in (None, [], {}, "", False)}
    return str(yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True))
