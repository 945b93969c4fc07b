"""Artifacts: list, show, check, and add or update custom ones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from peregrine.api.deps import Audit, context, require
from peregrine.api.schemas import ArtifactSummary, ArtifactText, ArtifactYaml, Problem
from peregrine.artifacts.loader import ArtifactError, parse_artifacts
from peregrine.artifacts.yaml_text import artifact_yaml
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import ARTIFACT_WRITER, READ_RESULTS

router = APIRouter(prefix="/artifacts", tags=["artifacts"])


def _problem(p: Any) -> Problem:
    return Problem(
        file=p.origin, line=p.line, artifact=p.artifact, severity=p.severity, message=p.message
    )


@router.get("", response_model=list[ArtifactSummary], summary="List artifacts")
async def list_artifacts(
    request: Request,
    search: str | None = Query(None, max_length=200),
    _: Principal = Depends(require(READ_RESULTS)),
) -> list[ArtifactSummary]:
    repo = context(request).services.repository
    found = repo.search(search) if search else list(repo)
    return [
        ArtifactSummary(name=a.name, type=a.type, summary=a.summary, origin=a.origin) for a in found
    ]


@router.get("/{name}", summary="One artifact's definition")
async def show_artifact(
    name: str, request: Request, _: Principal = Depends(require(READ_RESULTS))
) -> dict[str, Any]:
    try:
        artifact = context(request).services.repository.get(name)
    except ArtifactError as exc:
        raise HTTPException(404, str(exc)) from None
    data: dict[str, Any] = msgspec.to_builtins(artifact)
    return data


@router.get("/{name}/yaml", response_model=ArtifactYaml, summary="One artifact as YAML")
async def artifact_text(
    name: str, request: Request, _: Principal = Depends(require(READ_RESULTS))
) -> ArtifactYaml:
    """The artifact as YAML to edit (a server artifact's own file; others written out from
    their definition), and whether it is a server artifact."""
    services = context(request).services
    try:
        artifact = services.repository.get(name)
    except ArtifactError as exc:
        raise HTTPException(404, str(exc)) from None
    own = Path(services.config.data_dir) / "artifacts" / f"{artifact.name}.yaml"
    custom = artifact.origin == str(own)
    text = await asyncio.to_thread(own.read_text, "utf-8") if custom else artifact_yaml(artifact)
    return ArtifactYaml(name=artifact.name, yaml=text, origin=artifact.origin, custom=custom)


@router.post("/check", response_model=list[Problem], summary="Check artifact YAML")
async def check_artifacts(
    request: Request, body: ArtifactText, _: Principal = Depends(require(READ_RESULTS))
) -> list[Problem]:
    """YAML, fields, types and that every query compiles; nothing is stored."""
    return [_problem(p) for p in await asyncio.to_thread(_check, request, body.yaml)]


def _check(request: Request, text: str) -> list[Any]:
    repo = context(request).services.repository
    definitions, problems = parse_artifacts(text, "request")
    if problems:
        return problems
    from peregrine.artifacts.repository import ArtifactRepository

    scratch = ArtifactRepository(repo.engine)
    for artifact in repo:
        scratch.add(_definition(artifact))
    for definition in definitions:
        scratch.add(definition)
    return scratch.check([d.artifact.name for d in definitions])


def _definition(artifact: Any) -> Any:
    from peregrine.artifacts.loader import Definition

    return Definition(artifact, {})


@router.put("", response_model=list[ArtifactSummary], summary="Add or update custom artifacts")
async def put_artifacts(
    request: Request, body: ArtifactText, principal: Principal = Depends(require(ARTIFACT_WRITER))
) -> list[ArtifactSummary]:
    """Checked completely first; stored in the server's custom artifact directory and used
    from then on. A custom artifact may replace a built-in one (that is reported)."""
    services = context(request).services
    problems = [
        p for p in await asyncio.to_thread(_check, request, body.yaml) if p.severity == "error"
    ]
    audit = Audit(request, principal)
    if problems:
        await audit.record("artifact.put", result="refused", reason=str(problems[0]))
        raise HTTPException(400, "; ".join(str(p) for p in problems[:20]))
    definitions, _ = parse_artifacts(body.yaml, "request")
    directory = Path(services.config.data_dir) / "artifacts"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = []
    for definition in definitions:
        artifact = definition.artifact
        path = directory / f"{artifact.name}.yaml"
        await asyncio.to_thread(path.write_text, _document(body.yaml, artifact.name), "utf-8")
        services.repository.load_file(path)
        out.append(
            ArtifactSummary(
                name=artifact.name, type=artifact.type, summary=artifact.summary, origin=str(path)
            )
        )
        await audit.record("artifact.put", target=artifact.name)
    return out


def _document(text: str, name: str) -> str:
    """The YAML document of ``name`` within a multi-document text."""
    import yaml

    for document in yaml.safe_load_all(text):
        if isinstance(document, dict) and document.get("name") == name:
            return str(yaml.safe_dump(document, sort_keys=False))
    return text
