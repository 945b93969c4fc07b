"""Identifier checks and file-name sanitising: nothing an agent sends can leave its flow's folder.

Client and flow ids become directory names, so they are validated strictly (``ValueError``
otherwise). Artifact and source names become file names through :func:`safe_name`. Upload paths
(from the agent's machine: POSIX or Windows, possibly hostile) become a relative path under the
flow's ``uploads`` folder through :func:`upload_parts`.
"""

from __future__ import annotations

import hashlib
import re

CLIENT_ID_RE = re.compile(r"C\.[0-9a-f]{16}")
FLOW_ID_RE = re.compile(r"F\.[0-9A-Za-z]{16}")
#: Upload ids are chosen by the agent; they name files in the flow's working folders.
UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

#: The longest a single sanitised upload path component may be, in UTF-8 bytes (leaves room
#: for a collision suffix below the usual 255-byte limit).
MAX_COMPONENT_BYTES = 120
#: Deeper upload paths keep their first components and fold the rest into the last one.
MAX_DEPTH = 16

_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_id(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ValueError(f"invalid {what} {value!r}: must match {pattern.pattern}")
    return value


def _short_hash(*parts: str) -> str:
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:8]


def safe_name(text: str, limit: int = 80) -> str:
    """A readable file-name fragment: only ``[A-Za-z0-9._-]``, never empty, never hidden."""
    cleaned = _UNSAFE_FILE_CHARS.sub("_", text)[:limit].lstrip(".")
    return cleaned or "_"


def result_set_name(artifact: str, source: str) -> str:
    """The file stem of a result set: readable, plus a hash so two names never collide after
    sanitising (``a/b`` and ``a_b`` both read as ``a_b``)."""
    readable = f"{safe_name(artifact)}__{safe_name(source or 'default', 40)}"
    return f"{readable}__{_short_hash(artifact, source)}"


def _truncate_utf8(text: str, limit: int) -> str:
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    # Keep the extension readable and the name unique: head + hash + tail.
    tail = text[text.rfind(".") :] if "." in text[-12:] else ""
    tail_bytes = tail.encode("utf-8", "replace")[:12]
    head_room = limit - len(tail_bytes) - 10
    head = raw[:head_room].decode("utf-8", "ignore")
    return f"{head}~{_short_hash(text)}{tail_bytes.decode('utf-8', 'ignore')}"


def _clean_component(component: str) -> str:
    cleaned = _CONTROL.sub("_", component)
    # Lone surrogates cannot be file names on every filesystem: replace them too.
    cleaned = cleaned.encode("utf-8", "replace").decode("utf-8")
    return _truncate_utf8(cleaned, MAX_COMPONENT_BYTES)


def upload_parts(path: str) -> list[str]:
    """The components of the relative path an uploaded file is stored under.

    Windows separators count as separators, a drive letter (``C:``) or UNC/absolute prefix is
    dropped, ``.`` and ``..`` components are removed (never resolved), control characters and
    NUL become ``_``, long components are shortened (with a hash, so they stay distinct) and very
    deep paths are folded. The result is never empty and never contains a separator in a part.
    """
    text = _DRIVE.sub("", path.replace("\\", "/"), count=1)
    parts = [_clean_component(p) for p in text.split("/") if p not in ("", ".", "..")]
    parts = [p for p in parts if p not in ("", ".", "..")]
    if len(parts) > MAX_DEPTH:
        folded = _clean_component("_".join(parts[MAX_DEPTH - 1 :]))
        parts = [*parts[: MAX_DEPTH - 1], folded]
    return parts or ["unnamed"]
