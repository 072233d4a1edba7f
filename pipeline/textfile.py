"""Reading user text files in one place: decoding (``--encoding``) and splitting lines.

Every reader of a user's file (datasets, ``gloss predict``'s input, JSON Lines) decodes it with
:func:`decode_file` and splits it with :func:`split_lines`, so all of them agree on what a line is: a line ends
at ``\\n`` or ``\\r\\n`` only. ``str.splitlines`` also breaks at form feeds, ``\\x1c``-``\\x1e``, ``\\x85`` and
the Unicode line/paragraph separators, which 20ng's posts contain.
"""

from __future__ import annotations

import codecs
import logging
from pathlib import Path

from pipeline import options
from pipeline.errors import GlossError

logger = logging.getLogger("gloss")

UTF8_BOM = codecs.BOM_UTF8
PREFERRED = "cp1252"  # of single-byte code pages tied in detection (Windows' default for Western text)


def split_lines(text: str) -> list[str]:
    """The lines of ``text``, split at ``\\n`` only (a ``\\r`` before it is dropped, a lone ``\\r`` kept).

    A final line end does not start an empty line, as with ``str.splitlines``:
    ``split_lines("a\\fb\\r\\nc\\n") == ["a\\fb", "c"]``.
    """
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _not_decodable(path: Path, data: bytes, exc: UnicodeDecodeError, encoding: str) -> str:
    line = data[: exc.start].count(b"\n") + 1
    return f"{path}: line {line}: bytes that are not {encoding} (byte 0x{data[exc.start]:02x} at offset {exc.start})"


def _decodes(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _detect(path: Path, data: bytes, first_error: UnicodeDecodeError) -> tuple[str, str]:
    """The best charset-normalizer candidate that decodes all of ``data`` within the default threshold.

    charset-normalizer often ties several single-byte code pages (an English text with a few accents reads
    alike in cp1250, cp1252, cp1257, ...; its order among them is arbitrary). Among candidates tied with the
    best, the Western default ``cp1252`` is chosen when it is one of them; the others are logged.
    """
    from charset_normalizer import from_bytes

    found = [m for m in from_bytes(data, threshold=options.ENCODING_THRESHOLD)
             if m.chaos <= options.ENCODING_THRESHOLD and _decodes(data, m.encoding) is not None]
    if not found:
        raise GlossError(
            f"{_not_decodable(path, data, first_error, 'UTF-8')} and no encoding charset-normalizer detects "
            "decodes the whole file within its default threshold; pass --encoding (e.g. --encoding cp1252)"
        )
    tied = [m.encoding for m in found if (m.chaos, m.coherence) == (found[0].chaos, found[0].coherence)]
    encoding = PREFERRED if PREFERRED in tied and _decodes(data, PREFERRED) is not None else tied[0]
    others = [e for e in tied if e != encoding]
    also = f", tied with {', '.join(others)}" if others else ""
    logger.warning("%s; read as %s, detected by charset-normalizer%s (pass --encoding to choose)",
                   _not_decodable(path, data, first_error, "UTF-8"), encoding, also)
    return data.decode(encoding), encoding


def check_encoding(encoding: str) -> str:
    """``encoding`` if it is ``auto`` or a Python codec; else a one-line error naming ``--encoding``."""
    if encoding == "auto":
        return encoding
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise GlossError(f"--encoding {encoding}: not a known encoding (use auto, utf-8, cp1252, latin-1, ...)") from None
    return encoding


def decode_file(path: str | Path, encoding: str = options.ENCODING) -> tuple[str, str]:
    """``(text, encoding used)`` of the file at ``path``.

    ``auto``: UTF-8 (a leading byte-order mark is dropped, reported as ``utf-8-sig``), else the encoding
    charset-normalizer detects, logged; a file no candidate decodes stops with a one-line error suggesting
    ``--encoding``. Any other value is a Python codec name, applied strictly.
    """
    path = Path(path)
    data = path.read_bytes()
    check_encoding(encoding)
    if encoding != "auto":
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            raise GlossError(f"{_not_decodable(path, data, exc, encoding)}; see --encoding") from None
    used = "utf-8-sig" if data.startswith(UTF8_BOM) else "utf-8"
    try:
        return data.decode(used), used
    except UnicodeDecodeError as exc:
        return _detect(path, data, exc)
