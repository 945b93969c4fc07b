"""JSON log lines: the fields, the ids in force (and only while in force), tracebacks."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import msgspec
import pytest

from peregrine.config.model import LogSettings
from peregrine.logcontext import log_context, set_log_context
from peregrine.logformat import configure_logging


@pytest.fixture
def json_log(tmp_path: Path):  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    path = tmp_path / "log.jsonl"
    configure_logging("INFO", "json", str(path))
    try:
        yield path
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)


def test_lines_carry_the_ids_in_force_and_tracebacks(json_log: Path) -> None:
    log = logging.getLogger("peregrine.test")
    log.info("before")
    with log_context(client_id="C.0000000000000001", flow_id="F.1"):
        log.info("inside %s", "flow")
        with log_context(hunt_id="H.1"):
            log.warning("nested")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")

    async def task() -> None:  # a task's ids stay in the task
        set_log_context(client_id="C.0000000000000002")
        log.info("in a task")

    asyncio.run(task())
    log.info("after")
    lines = [json.loads(line) for line in json_log.read_text().splitlines()]
    by_message = {line["message"]: line for line in lines}
    assert set(by_message) == {"before", "inside flow", "nested", "failed", "in a task", "after"}
    assert by_message["before"].keys() == {"time", "level", "logger", "message"}
    assert by_message["inside flow"]["flow_id"] == "F.1"
    assert by_message["nested"]["hunt_id"] == "H.1"
    assert by_message["nested"]["client_id"] == "C.0000000000000001"
    assert by_message["nested"]["level"] == "WARNING"
    assert "ValueError: boom" in by_message["failed"]["exception"]
    assert by_message["in a task"]["client_id"] == "C.0000000000000002"
    assert "client_id" not in by_message["after"]


def test_the_configuration_names_the_format() -> None:
    assert msgspec.convert({"format": "json"}, LogSettings).format == "json"
    with pytest.raises(msgspec.ValidationError, match="format"):
        msgspec.convert({"format": "xml"}, LogSettings)
    with pytest.raises(ValueError, match="text, json"):
        configure_logging("INFO", "xml")  # type: ignore[arg-type]
