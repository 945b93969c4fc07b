"""Calling the notebook and timeline services from a route: in a thread, their refusals turned
into answers (not visible 404, not allowed 403, anything else they refuse 400), each with the
service's message saying what to do."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import HTTPException

from peregrine.auth.sharing import NotAllowed, NotVisible, SharingError


async def call(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except NotVisible as exc:
        raise HTTPException(404, str(exc)) from None
    except NotAllowed as exc:
        raise HTTPException(403, str(exc)) from None
    except SharingError as exc:
        raise HTTPException(400, str(exc)) from None
