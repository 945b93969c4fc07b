"""Offline collection: run artifacts here and write a collection archive.

Velociraptor's offline collector is one of its most used features: a responder runs one command
on a machine with no server and carries the archive away. The archive (``archive.py``) is the
same format the server will import.
"""

from __future__ import annotations

import platform
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from peregrine import __version__
from peregrine.artifacts.archive import ArchiveWriter
from peregrine.artifacts.runner import ArtifactRunner, Planned, SourceOutcome
from peregrine.engine.context import UploadSink

#: Called when a source starts, every few hundred rows, and when it ends.
Observer = Callable[[SourceOutcome], None]

DEFAULT_MAX_UPLOAD_BYTES = 1 << 30


def collect(
    runner: ArtifactRunner,
    plans: Sequence[Planned],
    output: Path,
    observe: Observer | None = None,
) -> dict[str, Any]:
    """Run every source of every planned artifact into ``output``; return the manifest."""
    started = time.time()
    writer = ArchiveWriter(output)
    notify = observe or (lambda outcome: None)
    artifacts: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="peregrine-uploads-") as upload_dir:
        for planned in plans:
            artifact = planned.artifact
            max_upload = artifact.resources.max_upload_bytes or DEFAULT_MAX_UPLOAD_BYTES
            sink = UploadSink(upload_dir, max_upload)
            entry: dict[str, Any] = {
                "name": artifact.name,
                "origin": artifact.origin,
                "parameters": planned.values,
                "sources": [],
            }
            writer.log("info", f"collecting {artifact.name}", parameters=planned.values)
            for source in artifact.sources:
                outcome = SourceOutcome(artifact.name, source.name)
                notify(outcome)
                rows = runner.run_source(planned, source, outcome, uploads=sink)
                stored = writer.write_rows(
                    artifact.name, source.name, _as_dicts(rows, outcome, notify)
                )
                notify(outcome)
                level = "error" if outcome.status == "error" else "info"
                writer.log(
                    level,
                    f"{artifact.name}/{source.name or 'default'}: {outcome.status}"
                    + (f" ({outcome.error})" if outcome.error else ""),
                    rows=outcome.rows,
                )
                for warning in outcome.warnings:
                    writer.log("warning", warning, artifact=artifact.name, source=source.name)
                entry["sources"].append(
                    {
                        "name": source.name,
                        "status": outcome.status,
                        "error": outcome.error,
                        "columns": outcome.columns,
                        "truncated": outcome.truncated,
                        "warnings": outcome.warning_count,
                        "elapsed": round(outcome.elapsed, 3),
                        **stored,
                    }
                )
            artifacts.append(entry)
        uploads = writer.add_uploads(Path(upload_dir))
    manifest = {
        "peregrine_version": __version__,
        "host": {
            "hostname": socket.gethostname(),
            "fqdn": socket.getfqdn(),
            "os": platform.system().lower(),
            "release": platform.release(),
            "machine": platform.machine(),
        },
        "started": started,
        "finished": time.time(),
        "artifacts": artifacts,
        "uploads": uploads,
    }
    writer.close(manifest)
    return manifest


def _as_dicts(
    rows: Iterator[tuple[Any, ...]], outcome: SourceOutcome, notify: Observer
) -> Iterator[dict[str, Any]]:
    """Rows as column -> value (columns are known once the query started), with progress."""
    for n, row in enumerate(rows, start=1):
        if n == 1 or n % 500 == 0:
            notify(outcome)
        yield dict(zip(outcome.columns, row, strict=False))
