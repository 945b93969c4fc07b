"""``Content-Disposition`` for a download, whatever the file is called (RFC 6266).

HTTP header values are Latin-1 and a quote, CR or LF inside one ends it early, so a file name
cannot be pasted in: an upload named ``отчёт.txt`` made the header unencodable (500). The name
travels twice: ``filename*`` carries it exactly, UTF-8 percent-encoded (RFC 8187, formerly
5987), and ``filename`` an ASCII stand-in for clients that do not read ``filename*``.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

#: RFC 8187 ``attr-char`` besides letters and digits: these stay as they are in ``filename*``.
_ATTR_CHARS = "!#$&+-.^_`|~"
#: What the ASCII stand-in may not hold: controls, quotes, backslashes, path separators.
_NOT_PLAIN = re.compile(r'[^\x20-\x7e]|["\\/]')


def ascii_fallback(filename: str, default: str = "download") -> str:
    """A printable-ASCII version of ``filename``: accents dropped, anything else ``_``."""
    decomposed = unicodedata.normalize("NFKD", filename)
    without_marks = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = _NOT_PLAIN.sub("_", without_marks).strip(" ")
    return plain[:200] or default


def attachment(filename: str) -> str:
    """The header value that makes a browser save the response as ``filename``."""
    encoded = quote(filename.encode("utf-8", "replace"), safe=_ATTR_CHARS)
    return f"attachment; filename=\"{ascii_fallback(filename)}\"; filename*=UTF-8''{encoded}"
