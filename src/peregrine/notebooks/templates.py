"""Ready-made cells for a notebook about a hunt or a client: what an analyst writes first.

For a hunt, per result source (found in the result sets already stored, else the hunt's
artifacts): rows and hosts, a stack count per column (bar chart), rare values per column
(outliers: seen on at most two hosts), and the hosts with no result. For a client: its
collections, and the first rows of each result set of its latest collections.
"""

from __future__ import annotations

from peregrine.analysis.sqltext import artifact_source, identifier, literal
from peregrine.datastore import Datastore
from peregrine.datastore.notebooks import CellRecord, new_cell_id
from peregrine.filestore import Filestore

#: Flows whose result sets are read to learn a hunt's sources and columns.
_SAMPLE_FLOWS = 50
#: Columns given a stack count and an outlier cell, per source.
_MAX_COLUMNS = 6
#: A client's latest collections given a cell each.
_CLIENT_FLOWS = 10
#: Columns every hunt row has (the engine adds them): not stacked themselves.
_HUNT_COLUMNS = ("client_id", "hostname")


def hunt_cells(datastore: Datastore, filestore: Filestore, hunt_id: str) -> list[CellRecord]:
    hunt = datastore.hunts.get(hunt_id)
    if hunt is None:
        raise LookupError(hunt_id)
    sources = _hunt_sources(datastore, filestore, hunt_id)
    if not sources:
        sources = {(str(a.get("name")), ""): [] for a in hunt.artifacts}
    names = ", ".join(f"`{artifact_source(a, s)}`" for a, s in sources)
    cells = [
        _markdown(
            f"# Hunt {hunt_id}\n\n{hunt.description}\n\nResult sources: {names}.\n\n"
            "Stack counts show what most hosts have; the rare values and the hosts with no "
            "result are where to look first."
        )
    ]
    for (artifact, source), columns in sources.items():
        table = f"hunt({literal(hunt_id)}, {literal(artifact_source(artifact, source))})"
        cells.append(
            _sql(f"SELECT count(*) AS rows, count(DISTINCT client_id) AS hosts FROM {table}")
        )
        for column in [c for c in columns if c not in _HUNT_COLUMNS][:_MAX_COLUMNS]:
            name = identifier(column)
            cells.append(
                _sql(
                    f"SELECT {name}, count(*) AS n, count(DISTINCT client_id) AS hosts\n"
                    f"FROM {table}\nGROUP BY 1 ORDER BY n DESC LIMIT 50",
                    {"type": "bar", "x": column, "y": "n", "title": f"{column}: stack count"},
                )
            )
            cells.append(
                _sql(
                    f"SELECT {name}, count(DISTINCT client_id) AS hosts, "
                    "list(DISTINCT hostname) AS on_hosts\n"
                    f"FROM {table}\nGROUP BY 1 HAVING count(DISTINCT client_id) <= 2\n"
                    "ORDER BY hosts, 1 LIMIT 100"
                )
            )
        cells.append(
            _sql(
                "SELECT c.client_id, c.state, c.error\nFROM collections() c\n"
                f"WHERE c.hunt_id = {literal(hunt_id)}\n"
                f"  AND c.client_id NOT IN (SELECT client_id FROM {table})\n"
                "ORDER BY c.client_id"
            )
        )
    return cells


def client_cells(datastore: Datastore, filestore: Filestore, client_id: str) -> list[CellRecord]:
    client = datastore.clients.get(client_id)
    if client is None:
        raise LookupError(client_id)
    cells = [
        _markdown(f"# Client {client_id} ({client.hostname or 'host name not known yet'})"),
        _sql(
            "SELECT flow_id, artifacts, state, created, rows\nFROM collections()\n"
            f"WHERE client_id = {literal(client_id)}\nORDER BY created DESC"
        ),
    ]
    flows = datastore.collections.list_for_client(client_id, limit=_CLIENT_FLOWS)
    for flow in flows:
        for artifact, source, _rows in filestore.result_sets(client_id, flow.flow_id):
            name = literal(artifact_source(artifact, source))
            cells.append(_sql(f"SELECT *\nFROM flow({literal(flow.flow_id)}, {name})\nLIMIT 100"))
    return cells


def _hunt_sources(
    datastore: Datastore, filestore: Filestore, hunt_id: str
) -> dict[tuple[str, str], list[str]]:
    """Each result source of the hunt's stored results, with its columns in first-seen order."""
    found: dict[tuple[str, str], list[str]] = {}
    for entry in datastore.hunts.clients(hunt_id, limit=_SAMPLE_FLOWS, offset=0):
        for artifact, source, _rows in filestore.result_sets(entry.client_id, entry.flow_id):
            known = found.setdefault((artifact, source), [])
            columns = filestore.columns(entry.client_id, entry.flow_id, artifact, source)
            known += [c for c in columns if c not in known]
    return dict(sorted(found.items()))


def _markdown(text: str) -> CellRecord:
    return CellRecord(cell_id=new_cell_id(), kind="markdown", text=text)


def _sql(text: str, chart: dict[str, str] | None = None) -> CellRecord:
    return CellRecord(cell_id=new_cell_id(), kind="sql", text=text, chart=chart)
