"""What a person reads: tables that fit the terminal without cutting ids, text printed as it is
(never read as Rich markup), queries shown as blocks, and a search that matches words."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import yaml
from rich.console import Console

from peregrine.artifacts.repository import ArtifactRepository, search_words
from peregrine.cli.output import OutputFormat, print_table, write_rows, yaml_text

ID = "C.0123456789abcdef"


def rendered(columns: list[str], rows: list[list[str]], width: int) -> str:
    out = io.StringIO()
    print_table(Console(file=out, width=width), columns, rows)
    return out.getvalue()


def test_a_table_that_fits_is_a_table() -> None:
    text = rendered(["client id", "host"], [[ID, "web-1"]], 80)
    assert "┃ client id" in text and ID in text


def test_a_wide_table_wraps_its_text_but_never_its_ids() -> None:
    text = rendered(["client id", "note"], [[ID, "word " * 40]], 60)
    assert all(len(line) <= 60 for line in text.splitlines())
    assert ID in text and "…" not in text
    assert text.count("word") == 40  # wrapped, nothing cut


def test_a_table_too_wide_to_wrap_becomes_records() -> None:
    columns = [f"column_{i}" for i in range(12)]
    text = rendered(
        ["flow_id", *columns], [["F.0123456789abcdef", *("value" for _ in columns)]], 80
    )
    assert "row 1" in text and "F.0123456789abcdef" in text
    assert all(f"column_{i}" in text for i in range(12)) and "…" not in text


def test_empty_results_say_0_rows() -> None:
    assert rendered(["a"], [], 80) == "0 rows\n"
    out = io.StringIO()
    write_rows(iter([]), ["a", "b"], OutputFormat.table, out, Console(file=out, width=80))
    assert out.getvalue() == "0 rows\n"


def test_cell_text_is_never_markup() -> None:
    text = rendered(["pattern"], [["/etc/[a-z]*.conf [bold]x[/bold]"]], 80)
    assert "/etc/[a-z]*.conf [bold]x[/bold]" in text


def test_queries_show_as_blocks_and_read_back_the_same() -> None:
    query = "SELECT a,\n       b\nFROM glob('/x/[a-z]*')\n"
    text = yaml_text({"sources": [{"query": query}]})
    assert "\\n" not in text and "query: |" in text
    assert yaml.safe_load(text) == {"sources": [{"query": query}]}


def test_search_matches_words_not_letters_inside_them() -> None:
    assert search_words("WindowsShell") == {"windows", "shell"}
    assert search_words("Linux.Ssh.AuthorizedKeys") == {"linux", "ssh", "authorized", "keys"}
    repo = ArtifactRepository.default()
    found = [a.name for a in repo.search("ssh")]
    assert "Linux.Ssh.AuthorizedKeys" in found
    assert not [name for name in found if "WindowsShell" in name]
    # A word of the name ranks before one only in the description.
    assert all("ssh" in search_words(name) for name in found[:5])


def peregrine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peregrine", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "100"},
    )  # fmt: skip


def test_plugin_help_keeps_brackets() -> None:
    done = peregrine("plugins", "show", "glob")
    assert done.returncode == 0 and "[a-z]" in done.stdout


def test_artifacts_show_prints_queries_as_written() -> None:
    done = peregrine("artifacts", "show", "Linux.Ssh.AuthorizedKeys")
    assert done.returncode == 0
    assert "\\n" not in done.stdout and "query: |" in done.stdout
    assert "JOIN authorized_keys() k ON k.username = u.username\n" in done.stdout
