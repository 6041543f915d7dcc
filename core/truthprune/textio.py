"""The one reader of user-supplied files: encodings, binary content, sizes, record types.

Why one module: every reader (TOML config, calibration .txt/.jsonl/.parquet, truth-statement
CSVs, TruthfulQA.csv, evaluation texts, JSON files) used to open files its own way, and a
Latin-1 file, a binary file, a NUL-only file, a 300 KB CSV field or a ``"text": null`` record
ended in a UnicodeDecodeError, a csv field-limit error, or worse, was silently read as the text
"None". Here each of those is one :class:`UserError` line naming the file and the fix, or, where
the data is still usable, one warning that says what was done.

Accepted text: UTF-8 (with or without BOM) and UTF-16/UTF-32 with a BOM. Anything with NUL bytes
after decoding is treated as binary and refused.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UserError

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 2 * 1024**3  # larger user text files are refused (read into memory whole)
MAX_CSV_FIELD = 64 * 1024 * 1024  # one CSV cell; the csv module's default 128 KiB is too small for long statements
MIN_DISTINCT_WORDS = 2  # calibration text below this is refused (a window of one word repeated)
FEW_DISTINCT_WORDS = 32  # ... and below this it is used with a warning

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def kind_of_file(st: os.stat_result) -> str:
    """What a path is, in words (for messages: "is a FIFO", not "does not exist")."""
    mode = st.st_mode
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


def describe(path: str | Path) -> str:
    """``does not exist`` / ``is a directory`` / ``is a FIFO (named pipe)`` ... of ``path``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "does not exist"
    except NotADirectoryError:
        return "does not exist (a part of its path is a file)"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISLNK(st.st_mode) and not os.path.exists(path):
        return "is a symbolic link to nothing"
    try:
        st = os.stat(path)
    except OSError:
        pass
    return f"is {kind_of_file(st)}"


def require_file(path: str | Path, what: str, fix: str) -> Path:
    """``path`` as a regular file (a link to one is fine), else one UserError saying what it is: a
    directory, a FIFO (opening one would block forever), a device... or that it does not exist."""
    p = Path(path).expanduser()
    try:
        st = os.stat(p)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise UserError(f"{what} {str(p)!r} {describe(p)}; {fix}")
    return p


_existing_file = require_file


def decode_text(raw: bytes, where: str, what: str = "file") -> str:
    """Bytes -> str under the rules above; UserError naming the offending byte otherwise."""
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        if b"\x00" in raw[:8192]:
            raise UserError(f"{what} {where} is binary, not text (it contains NUL bytes); pass a UTF-8 text file") from None
        raise UserError(
            f"{what} {where} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); convert it, e.g. "
            "iconv -f latin1 -t utf-8 FILE > FILE.utf8, and pass the converted file"
        ) from None
    if "\x00" in text:
        raise UserError(f"{what} {where} is binary, not text (it contains NUL bytes); pass a UTF-8 text file")
    return text


def read_text_file(path: str | Path, what: str = "file", fix: str = "pass an existing UTF-8 text file",
                   max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The whole file as text; missing, directory, too large, binary or non-UTF-8 -> UserError."""
    p = _existing_file(path, what, fix)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise UserError(f"{what} {str(p)!r} is {size / 1e9:.1f} GB, over the {max_bytes / 1e9:.1f} GB this reader "
                            "accepts; pass a smaller excerpt")
        raw = p.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {what} {str(p)!r}: {err.strerror or err}") from None
    return decode_text(raw, repr(str(p)), what)


def parse_json(text: str, where: str, what: str = "JSON file") -> Any:
    """``json.loads`` whose every failure is one UserError: invalid JSON, absurd nesting (a
    RecursionError) and integers longer than Python converts (a ValueError, 4300 digits)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{what} {where} is not valid JSON ({err.msg} at line {err.lineno}); fix or regenerate it") from None
    except RecursionError:
        raise UserError(f"{what} {where} is nested too deeply to be a real {what}") from None
    except ValueError as err:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise UserError(f"{what} {where} holds a number too long to read ({str(err).split(';')[0]}); "
                        "fix or regenerate it") from None


def option_value(raw: str, where: str = "option") -> Any:
    """A ``key=value`` option's value: JSON when it parses (numbers, booleans, lists), else the text."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
    except (RecursionError, ValueError):  # absurd nesting, or an integer longer than Python converts
        raise UserError(f"{where} value {raw[:40]!r}... is nested too deeply or holds a number too long; "
                        "give a plain value") from None


def read_json_file(path: str | Path, what: str = "JSON file") -> Any:
    return parse_json(read_text_file(path, what), repr(str(path)), what)


def csv_dict_rows(path: str | Path, what: str, fix: str = "pass an existing UTF-8 CSV file") -> tuple[list[str], Iterator[dict[str, str]]]:
    """(stripped header, rows) of a CSV file read through :func:`read_text_file`; long fields allowed."""
    text = read_text_file(path, what, fix)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_FIELD))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [c.strip() if isinstance(c, str) else "" for c in (reader.fieldnames or [])]
    except csv.Error as err:
        raise UserError(f"{what} {str(path)!r} is not a readable CSV file ({err})") from None
    twice = sorted({c for c in header if c and header.count(c) > 1})
    if twice:  # csv.DictReader would silently keep the last of them
        raise UserError(f"{what} {str(path)!r} has {header.count(twice[0])} columns named {twice[0]!r}; keep one of them")
    reader.fieldnames = header

    def rows() -> Iterator[dict[str, str]]:
        line = 1
        try:
            for row in reader:
                line = reader.line_num
                yield {k: (v if isinstance(v, str) else "") for k, v in row.items() if k is not None}
        except csv.Error as err:
            raise UserError(f"{what} {str(path)!r} line {line + 1}: not readable as CSV ({err}); fix the quoting") from None

    return header, rows()


_LABEL = re.compile(r"[+]?([01])(\.0*)?")


def finite_label(raw: str, where: str) -> int:
    """A 0/1 label from a CSV cell: '1', '0', '1.0', '0.00'. Anything else is refused, including
    inf, nan, 2, yes and '0.99999999999999999' (a float parse would round it to 1)."""
    m = _LABEL.fullmatch(raw.strip())
    if m is None:
        shown = raw.strip() if re.fullmatch(r"-?\d{1,20}", raw.strip()) else repr(raw[:40])
        raise UserError(f"{where}: label {shown} is not 0 or 1 (1 = true, 0 = false)")
    return int(m.group(1))


# ----------------------------------------------------------------------------- record files


def jsonl_records(path: Path, field: str) -> list[str]:
    """``field`` of every line of a .jsonl file; a record that is not a string is refused."""
    records = []
    for lineno, line in enumerate(read_text_file(path, "calibration file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{lineno}: not valid JSON ({err.msg}); each line must be an object") from None
        except (RecursionError, ValueError):  # absurd nesting; integers longer than Python converts
            raise UserError(f"{path}:{lineno}: not a readable JSON record (nested too deeply or a number too long); "
                            "each line must be an object with a text field") from None
        if not isinstance(obj, dict) or field not in obj:
            raise UserError(f"{path}:{lineno}: no {field!r} field; each line must be an object with a {field!r} string")
        value = obj[field]
        if not isinstance(value, str):
            kind = "null" if value is None else type(value).__name__
            raise UserError(f"{path}:{lineno}: {field!r} is {kind}, not a string; give every record text "
                            f"(or choose another field with --calibration-opt field=NAME)")
        records.append(value)
    return records


def parquet_records(path: Path, field: str) -> list[str]:
    """``field`` of a .parquet file; unreadable files and non-string columns are refused, nulls skipped."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"{path}: reading .parquet needs pyarrow; pip install pyarrow, or pass .txt/.jsonl") from None
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise UserError(f"{path} is not a readable parquet file ({type(err).__name__}); pass a valid .parquet, "
                        ".jsonl or .txt file") from None
    if field not in table.column_names:
        raise UserError(f"{path}: no column {field!r} (columns: {', '.join(table.column_names) or 'none'})")
    column = table.column(field)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise UserError(f"{path}: column {field!r} holds {column.type}, not text; choose a text column with "
                        "--calibration-opt field=NAME")
    values = column.to_pylist()
    nulls = sum(v is None for v in values)
    if nulls:
        log.warning("%s: skipped %d null record(s) in column %r", path, nulls, field)
    return [v for v in values if v is not None]


def check_calibration_text(records: list[str], where: str) -> None:
    """Refuse text too poor to calibrate on; warn when windows will mostly repeat it."""
    words: set[str] = set()
    for r in records:
        words.update(r.split())
        if len(words) >= FEW_DISTINCT_WORDS:
            return
    if len(words) < MIN_DISTINCT_WORDS:
        shown = ", ".join(repr(w) for w in sorted(words)[:3]) or "none"
        raise UserError(f"calibration file {where} has {len(words)} distinct word(s) ({shown}); every window would "
                        "repeat it, which calibrates nothing: give a real text of at least a few paragraphs")
    log.warning("calibration file %s has only %d distinct words; the windows will repeat it, so statistics are "
                "poor (give a longer text)", where, len(words))
