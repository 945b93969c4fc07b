"""Notebooks: ordered Markdown and SQL cells over the analysis engine, each SQL cell's last
result kept in the datastore, exported as a self-contained HTML report or as JSON."""

from __future__ import annotations

from .model import NotebookError, NotebookNotFound
from .service import NotebookService

__all__ = ["NotebookError", "NotebookNotFound", "NotebookService"]
