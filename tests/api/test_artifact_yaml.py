"""GET /artifacts/{name}/yaml: what the GUI's editor starts from; a server artifact's own
file, any other artifact written out from its definition."""

from __future__ import annotations

from tests.api.conftest import Live

CUSTOM = """name: Server.Editor.YamlTest
description: A server artifact stored through the API for the editor's test.
type: CLIENT
sources:
  - query: |
      SELECT 1 AS one  -- the stored text comes back as written
"""


def test_a_server_artifact_comes_back_as_stored(live: Live) -> None:
    with live.http(live.tokens["administrator"]) as http:
        assert http.put("/artifacts", json={"yaml": CUSTOM}).status_code == 200
        stored = http.get("/artifacts/Server.Editor.YamlTest/yaml").json()
    assert stored["custom"] is True
    assert "-- the stored text comes back as written" in stored["yaml"]


def test_another_artifact_is_written_out_and_not_custom(live: Live) -> None:
    with live.http(live.tokens["reader"]) as http:
        answer = http.get("/artifacts/Generic.Client.Info/yaml")
        missing = http.get("/artifacts/No.Such.Artifact/yaml")
    assert answer.status_code == 200
    assert answer.json()["custom"] is False
    assert answer.json()["yaml"].startswith("name: Generic.Client.Info\n")
    assert missing.status_code == 404
