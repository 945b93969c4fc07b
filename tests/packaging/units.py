"""The systemd units in ``deploy/systemd/``, read the way systemd reads them."""

from __future__ import annotations

import configparser
from pathlib import Path

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
AGENT = UNITS / "peregrine-agent.service"
FRONTEND = UNITS / "peregrine-frontend@.service"


def directives(unit: Path) -> dict[str, dict[str, str]]:
    """Each section's directives (a repeated directive keeps its last value)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    return {name: dict(parser[name]) for name in parser.sections()}


def executables(unit: Path) -> list[str]:
    """The programs its Exec lines start."""
    service = directives(unit)["Service"]
    return [value.split()[0] for key, value in service.items() if key.startswith("Exec")]
