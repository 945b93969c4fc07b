"""C library functions through ctypes, where this platform's libc has them."""

from __future__ import annotations

import ctypes
from typing import Any


def libc_function(
    name: str, argtypes: list[Any], restype: Any = ctypes.c_int, use_errno: bool = False
) -> Any | None:
    """libc's ``name`` with its argument and result types set, or None where there is none
    (another C library, another system)."""
    try:
        function = getattr(ctypes.CDLL(None, use_errno=use_errno), name)
    except (AttributeError, OSError):
        return None
    function.argtypes = argtypes
    function.restype = restype
    return function
