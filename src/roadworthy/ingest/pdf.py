"""PDF text per page with pypdf (the ``[formats]`` extra).

pypdf reads damaged files leniently, so failures surface as many exception types; any of
them means ``corrupt_file``. A PDF whose pages have no text layer (a scan) is rejected as
``no_text``: OCR is out of scope, and passing an empty string to a model wastes a call.
"""

from __future__ import annotations

import io
import logging

from ..errors import InputRejected
from ._optional import require

__all__ = ["pdf_pages"]


def pdf_pages(data: bytes, *, max_pages: int) -> list[str]:
    """The text of each page, in order; raises :class:`InputRejected` on bad files."""
    pypdf = require("pypdf", "reading PDF files")
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise InputRejected("encrypted", "PDF is encrypted with a password")
        count = len(reader.pages)
    except InputRejected:
        raise
    except Exception as exc:
        raise InputRejected("corrupt_file", f"PDF cannot be read: {exc}") from None
    if count == 0:
        raise InputRejected("empty", "PDF has no pages")
    if count > max_pages:
        raise InputRejected("too_many_pages", f"{count} pages, limit {max_pages}")
    pages: list[str] = []
    for number, page in enumerate(reader.pages, 1):
        try:
            pages.append(str(page.extract_text() or ""))
        except Exception as exc:
            raise InputRejected(
                "corrupt_file", f"page {number} cannot be read: {exc}", f"page {number}"
            ) from None
    if not any(p.strip() for p in pages):
        raise InputRejected("no_text", "PDF has no text layer (scanned?); OCR is not supported")
    return pages
