"""Every known artifact written back as YAML loads as the same artifact (what the GUI's
editor starts from), with multi-line text as literal blocks."""

from __future__ import annotations

import msgspec

from peregrine.artifacts.loader import parse_artifacts
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.artifacts.yaml_text import artifact_yaml


def test_every_artifact_round_trips() -> None:
    repository = ArtifactRepository.default(forensic=True)
    assert len(repository) > 700
    for artifact in repository:
        definitions, problems = parse_artifacts(artifact_yaml(artifact), "editor")
        assert problems == [], artifact.name
        again = msgspec.structs.replace(definitions[0].artifact, origin=artifact.origin)
        assert again == artifact, artifact.name


def test_queries_are_literal_blocks_in_the_usual_order() -> None:
    artifact = ArtifactRepository.default(forensic=False).get("Generic.Client.Info")
    text = artifact_yaml(artifact)
    assert text.startswith("name: Generic.Client.Info\ndescription: |\n")
    assert "- query: |\n    SELECT hostname" in text
    assert "origin" not in text
