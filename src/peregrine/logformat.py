"""How a process logs: text for people, or JSON lines for log shippers (``--log-format json``,
``logging: format: json``), each line with the client, flow and hunt it concerns."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Literal

from peregrine.logcontext import FIELDS, ContextFilter

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601, ms), level, logger, message, the ids
    in force, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


#: Loggers of libraries kept to warnings unless the level is DEBUG.
QUIET_LIBRARIES = ("alembic", "httpx", "httpcore")


def configure_logging(level: str, format: LogFormat = "text", file: str = "") -> None:
    """Log at ``level`` to standard error (or ``file``) in ``format``; replaces earlier
    handlers, so the server can apply its configuration after the command line's."""
    if format not in FORMATS:
        raise ValueError(f"log format {format!r}: use one of {', '.join(FORMATS)}")
    handler: logging.Handler
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that narrate routine work at INFO (Alembic's plugins and each migration step,
    # every HTTP request of httpx) would bury the server's own lines; DEBUG shows them.
    quiet = logging.WARNING if root.level > logging.DEBUG else logging.NOTSET
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
