"""Compact, versioned binary files for snapshots and watcher timelines.

A *snapshot file* holds one :class:`~pyleakhunt._raw.RawSnapshot`; a
*timeline file* holds an ordered sequence of (normally aggregated) snapshots
of one process, appended one at a time by :class:`TimelineWriter`.  The byte
layout, the versioning policy and the limits are documented in
``docs/file-format.md``.

Loading never executes code: no pickle, no eval.  Every count and length read
from a file is checked against the bytes actually present and against hard
limits before anything is allocated, and decompression is bounded, so a
corrupt, truncated or hostile file raises :class:`FileFormatError` and
nothing else.

The only way to read a pickle is :func:`import_tracemalloc_pickle`, which
must be called explicitly and warns with :class:`PickleImportWarning`.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import struct
import sys
import warnings
import zlib
from array import array
from typing import (
    Any,
    BinaryIO,
    Callable,
    Dict,
    Iterator,
    List,
    Literal,
    NoReturn,
    Optional,
    Tuple,
    Union,
    overload,
)

from ._raw import RawColumns, RawFrames, RawSite, RawSnapshot

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "FileFormatError",
    "PickleImportWarning",
    "TimelineWriter",
    "file_kind",
    "import_tracemalloc_pickle",
    "iter_timeline",
    "read_any",
    "read_snapshot",
    "read_timeline",
    "write_snapshot",
]

#: First 8 bytes of every pyleakhunt file (PNG style: a non-ASCII first byte
#: and a trailing newline catch 7-bit and newline-translating transfers).
MAGIC = b"\x89PLHUNT\n"
#: Version written by this module; readers accept 1..FORMAT_VERSION.
#: Version 2 (2026-12-07): the sites' sixth column is ``low`` (the lowest
#: size since the previous snapshot) where version 1 had ``peak``, which
#: no reader used; a version 1 file reads with every ``low`` 0, unknown.
FORMAT_VERSION = 2

#: Source of a reader: a path or a binary file object opened for reading.
Source = Union[str, bytes, "os.PathLike[str]", BinaryIO]
#: Destination of a writer: a path or a binary file object open for writing.
Destination = Union[str, bytes, "os.PathLike[str]", BinaryIO]

# --------------------------------------------------------------------------
# Layout constants (see docs/file-format.md)
# --------------------------------------------------------------------------

KIND_SNAPSHOT = 0x53  # b"S"
KIND_TIMELINE = 0x54  # b"T"
ENTRY_MARKER = b"SNAP"

# magic, version, kind, 5 reserved bytes
_FILE_HEADER = struct.Struct("<8sHB5x")
# marker, payload length, CRC-32 of the payload
_ENTRY_HEADER = struct.Struct("<4sQI")
# section id, section flags, stored length, decoded length
_SECTION_HEADER = struct.Struct("<BBQQ")
# flags, reserved, traceback_limit, sample_bytes, lost_blocks, pid,
# timestamp, n_blocks
_META = struct.Struct("<IIqQQQdQ")

_SECTION_ZLIB = 0x01
_META_FULL = 0x01

SECTION_META = 1
SECTION_STRINGS = 2
SECTION_FRAMES = 3
SECTION_TRACEBACKS = 4
SECTION_SITES = 5
SECTION_TAGS = 6
SECTION_ATTRS = 7
SECTION_BLOCKS = 8
_SECTION_NAMES = {
    SECTION_META: "META",
    SECTION_STRINGS: "STRINGS",
    SECTION_FRAMES: "FRAMES",
    SECTION_TRACEBACKS: "TRACEBACKS",
    SECTION_SITES: "SITES",
    SECTION_TAGS: "TAGS",
    SECTION_ATTRS: "ATTRS",
    SECTION_BLOCKS: "BLOCKS",
}
#: Section ids from this value up are optional: readers skip unknown ones.
FIRST_OPTIONAL_SECTION = 0x80

# --------------------------------------------------------------------------
# Hard limits, checked on both write and read
# --------------------------------------------------------------------------

MAX_ENTRY_BYTES = 1 << 40
MAX_SECTION_BYTES = 1 << 36
MAX_STRINGS = 1 << 24
MAX_STRING_BYTES = 1 << 20
MAX_FRAMES = 1 << 26
MAX_TRACEBACKS = 1 << 24
MAX_TRACEBACK_DEPTH = 1 << 20
MAX_TRACEBACK_FRAMES_TOTAL = 1 << 28
MAX_SITES = 1 << 24
MAX_TAGS = 1 << 24
MAX_BLOCKS = (1 << 32) - 1
MAX_ATTRS_BYTES = 1 << 26
MAX_ATTRS_DEPTH = 100
#: Deflate cannot expand more than ~1032:1; a larger declared ratio is a lie.
_MAX_ZLIB_RATIO = 1032

_LITTLE = sys.byteorder == "little"
_U32 = "I" if array("I").itemsize == 4 else "L"
_U64 = "Q"
_U64_LIMIT = 1 << 64
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_READ_CHUNK = 1 << 24
_COMPRESS_MIN = 64
_BLOCKS_LEVEL = 1
_TABLES_LEVEL = 6


class FileFormatError(ValueError):
    """The data is not a valid pyleakhunt file (corrupt, truncated, hostile)."""


class PickleImportWarning(UserWarning):
    """Emitted by :func:`import_tracemalloc_pickle`: unpickling is unsafe."""


class _TruncatedError(FileFormatError):
    """The data ends inside an entry (a writer was probably killed)."""


# ==========================================================================
# Writing
# ==========================================================================


def _u64_array(values: Any, what: str, typecode: str = _U64) -> array:
    """Return *values* as an unsigned array, with a clear error if out of range."""
    if isinstance(values, array) and values.typecode == typecode:
        return values
    try:
        return array(typecode, values)
    except OverflowError:
        limit = 1 << (8 * array(typecode).itemsize)
        raise ValueError(
            f"{what}: every value must be an integer in [0, {limit})"
        ) from None


def _zigzag(values: List[int], what: str) -> List[int]:
    """Map signed 64-bit integers to unsigned ones (0, -1, 1, -2 -> 0, 1, 2, 3)."""
    if values and (min(values) < _I64_MIN or max(values) > _I64_MAX):
        raise ValueError(f"{what}: every value must be a signed 64-bit integer")
    return [(v << 1) ^ (v >> 63) for v in values]


def _encode_column(arr: array, maxval: Optional[int] = None) -> bytes:
    """Encode an unsigned array as a width byte followed by byte planes.

    Only the low *width* bytes (1, 2, 4 or 8, the fewest that hold the largest
    value) are stored, and byte *k* of every value is stored together (plane
    *k*): zlib compresses the planes of small integers very well.
    """
    n = len(arr)
    if maxval is None:
        maxval = max(arr) if n else 0
    if maxval < 1 << 8:
        width = 1
    elif maxval < 1 << 16:
        width = 2
    elif maxval < 1 << 32:
        width = 4
    else:
        width = 8
    itemsize = arr.itemsize
    if not _LITTLE:
        arr = array(arr.typecode, arr)
        arr.byteswap()
    raw = arr.tobytes()
    parts = [bytes((width,))]
    parts.extend(raw[k::itemsize] for k in range(width))
    return b"".join(parts)


def _check_json(value: Any, path: str, depth: int) -> None:
    """Raise TypeError unless *value* round-trips exactly through JSON."""
    if depth > MAX_ATTRS_DEPTH:
        raise TypeError(
            f"attrs{path}: nested deeper than {MAX_ATTRS_DEPTH} levels "
            "(or a circular reference)"
        )
    kind = type(value)
    if value is None or kind in (str, int, float, bool):
        return
    if kind is list:
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(
                    f"attrs{path}: key {key!r} is a {type(key).__name__}; "
                    "only str keys survive a round-trip through JSON"
                )
            _check_json(item, f"{path}[{key!r}]", depth + 1)
        return
    hint = "; use a list" if kind is tuple else ""
    raise TypeError(
        f"attrs{path} is a {kind.__name__}: snapshot attributes must be "
        "JSON-compatible (dict with str keys, list, str, int, float, bool, "
        f"None){hint}"
    )


def _encode_attrs(attrs: Dict[str, Any]) -> bytes:
    if type(attrs) is not dict:
        raise TypeError(f"attrs must be a dict, not {type(attrs).__name__}")
    _check_json(attrs, "", 0)
    try:
        text = json.dumps(attrs, ensure_ascii=True, separators=(",", ":"))
    except ValueError as exc:  # e.g. an int beyond sys.get_int_max_str_digits
        raise TypeError(f"attrs cannot be serialised as JSON: {exc}") from None
    data = text.encode("ascii")
    if len(data) > MAX_ATTRS_BYTES:
        raise ValueError(f"attrs serialise to {len(data)} bytes (> {MAX_ATTRS_BYTES})")
    return data


def _index(items: List[Any]) -> Dict[Any, int]:
    """Map each distinct item to its rank of first appearance."""
    return {item: i for i, item in enumerate(dict.fromkeys(items))}


def _encode_strings(strings: List[str]) -> bytes:
    for text in strings:
        if type(text) is not str:
            raise TypeError(
                f"filenames and tag names must be str, not {type(text).__name__}"
            )
    blobs = [text.encode("utf-8", "surrogatepass") for text in strings]
    lengths = array(_U32, map(len, blobs))
    if blobs and max(lengths) > MAX_STRING_BYTES:
        raise ValueError(f"a string is longer than {MAX_STRING_BYTES} bytes")
    if len(blobs) > MAX_STRINGS:
        raise ValueError(f"more than {MAX_STRINGS} distinct strings")
    return b"".join([struct.pack("<Q", len(blobs)), _encode_column(lengths), *blobs])


def _section(sid: int, raw: bytes, level: int) -> bytes:
    if len(raw) > MAX_SECTION_BYTES:
        raise ValueError(
            f"section {_SECTION_NAMES[sid]} is {len(raw)} bytes (> {MAX_SECTION_BYTES})"
        )
    flags = 0
    stored = raw
    if level and len(raw) >= _COMPRESS_MIN:
        packed = zlib.compress(raw, level)
        if len(packed) < len(raw):
            flags, stored = _SECTION_ZLIB, packed
    return _SECTION_HEADER.pack(sid, flags, len(stored), len(raw)) + stored


_SectionEncoder = Callable[[int, bytes, int], bytes]


class _RepeatedSections:
    """`_section` for the entries of one timeline: a section that is byte
    for byte the previous entry's keeps the previous encoding instead of
    being compressed again.  A watcher's samples repeat most of their
    tables (the strings nine times in ten, the frames and tracebacks one
    time in two), and every `zlib.compress` gives up the GIL, which
    behind a busy program costs the sampling thread up to a switch
    interval to get back."""

    def __init__(self) -> None:
        self._last: Dict[int, Tuple[bytes, bytes]] = {}

    def __call__(self, sid: int, raw: bytes, level: int) -> bytes:
        last = self._last.get(sid)
        if last is not None and last[0] == raw:
            return last[1]
        section = _section(sid, raw, level)
        self._last[sid] = (raw, section)
        return section


def _encode_payload(snap: RawSnapshot, section: _SectionEncoder = _section) -> bytes:
    """Encode the sections of one snapshot (an entry payload), each with
    *section*."""
    sites = snap.sites
    if len(sites) > MAX_SITES:
        raise ValueError(f"{len(sites)} sites (> {MAX_SITES})")
    # Intern tracebacks, then frames, then strings, with C-level loops.
    site_frames = [site.frames for site in sites]
    tb_index = _index(site_frames)
    site_tb = list(map(tb_index.__getitem__, site_frames))
    tb_lengths = list(map(len, tb_index))
    if len(tb_index) > MAX_TRACEBACKS:
        raise ValueError(f"more than {MAX_TRACEBACKS} distinct tracebacks")
    if tb_lengths and max(tb_lengths) > MAX_TRACEBACK_DEPTH:
        raise ValueError(f"a traceback has more than {MAX_TRACEBACK_DEPTH} frames")
    all_frames = list(itertools.chain.from_iterable(tb_index))
    if len(all_frames) > MAX_TRACEBACK_FRAMES_TOTAL:
        raise ValueError(f"more than {MAX_TRACEBACK_FRAMES_TOTAL} traceback frames")
    frame_index = _index(all_frames)
    tb_flat = list(map(frame_index.__getitem__, all_frames))
    if len(frame_index) > MAX_FRAMES:
        raise ValueError(f"more than {MAX_FRAMES} distinct frames")
    try:
        filenames = [filename for filename, _ in frame_index]
        frame_lines = [lineno for _, lineno in frame_index]
    except (TypeError, ValueError):
        raise TypeError("each frame must be a (filename, lineno) tuple") from None
    tag_ids = list(snap.tags)
    if len(tag_ids) > MAX_TAGS:
        raise ValueError(f"more than {MAX_TAGS} tags")
    string_index = _index([*filenames, *snap.tags.values()])
    frame_files = list(map(string_index.__getitem__, filenames))
    tag_names = list(map(string_index.__getitem__, snap.tags.values()))

    out: List[bytes] = []
    full = snap.block_sites is not None or snap.block_sizes is not None
    n_blocks = 0
    if full:
        if snap.block_sites is None or snap.block_sizes is None:
            raise ValueError("block_sites and block_sizes must both be set or None")
        n_blocks = len(snap.block_sites)
        if len(snap.block_sizes) != n_blocks:
            raise ValueError(
                f"block_sites has {n_blocks} items but block_sizes has "
                f"{len(snap.block_sizes)}"
            )
        if n_blocks > MAX_BLOCKS:
            raise ValueError(f"{n_blocks} blocks (> {MAX_BLOCKS})")
    for name, value, low, high in (
        ("sample_bytes", snap.sample_bytes, 0, _U64_LIMIT - 1),
        ("lost_blocks", snap.lost_blocks, 0, _U64_LIMIT - 1),
        ("pid", snap.pid, 0, _U64_LIMIT - 1),
        ("traceback_limit", snap.traceback_limit, _I64_MIN, _I64_MAX),
    ):
        if not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if not low <= value <= high:
            raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    meta = _META.pack(
        _META_FULL if full else 0,
        0,
        snap.traceback_limit,
        snap.sample_bytes,
        snap.lost_blocks,
        snap.pid,
        float(snap.timestamp),
        n_blocks,
    )
    out.append(section(SECTION_META, meta, 0))

    frames_raw = b"".join(
        [
            struct.pack("<Q", len(frame_files)),
            _encode_column(array(_U32, frame_files)),
            _encode_column(array(_U64, _zigzag(frame_lines, "lineno"))),
        ]
    )
    tbs_raw = b"".join(
        [
            struct.pack("<Q", len(tb_lengths)),
            _encode_column(array(_U32, tb_lengths)),
            struct.pack("<Q", len(tb_flat)),
            _encode_column(array(_U32, tb_flat)),
        ]
    )
    total_nframe = [
        0 if site.total_nframe is None else site.total_nframe + 1 for site in sites
    ]
    columns = [
        _encode_column(array(_U64, _zigzag([s.domain for s in sites], "domain"))),
        _encode_column(array(_U32, site_tb)),
        _encode_column(_u64_array(total_nframe, "site total_nframe + 1")),
        _encode_column(_u64_array([s.count for s in sites], "site count")),
        _encode_column(_u64_array([s.size for s in sites], "site size")),
        _encode_column(_u64_array([s.low for s in sites], "site low")),
        _encode_column(array(_U64, _zigzag([s.tag for s in sites], "site tag"))),
    ]
    sites_raw = b"".join([struct.pack("<Q", len(sites)), *columns])

    strings_raw = _encode_strings(list(string_index))
    out.append(section(SECTION_STRINGS, strings_raw, _TABLES_LEVEL))
    out.append(section(SECTION_FRAMES, frames_raw, _TABLES_LEVEL))
    out.append(section(SECTION_TRACEBACKS, tbs_raw, _TABLES_LEVEL))
    out.append(section(SECTION_SITES, sites_raw, _TABLES_LEVEL))
    if tag_ids:
        tags_raw = b"".join(
            [
                struct.pack("<Q", len(tag_ids)),
                _encode_column(array(_U64, _zigzag(tag_ids, "tag number"))),
                _encode_column(array(_U32, tag_names)),
            ]
        )
        out.append(section(SECTION_TAGS, tags_raw, _TABLES_LEVEL))
    if snap.attrs:
        out.append(section(SECTION_ATTRS, _encode_attrs(snap.attrs), _TABLES_LEVEL))
    if full:
        block_sites = _u64_array(snap.block_sites, "block_sites", _U32)
        block_sizes = _u64_array(snap.block_sizes, "block_sizes")
        top = max(block_sites) if n_blocks else 0
        if n_blocks and top >= len(sites):
            raise ValueError(
                f"block_sites refers to site {top} but there are {len(sites)} sites"
            )
        blocks_raw = _encode_column(block_sites, top) + _encode_column(block_sizes)
        out.append(section(SECTION_BLOCKS, blocks_raw, _BLOCKS_LEVEL))

    payload = b"".join(out)
    if len(payload) > MAX_ENTRY_BYTES:
        raise ValueError(f"snapshot encodes to {len(payload)} bytes (> limit)")
    return payload


def _encode_entry(snap: RawSnapshot, section: _SectionEncoder = _section) -> bytes:
    payload = _encode_payload(snap, section)
    header = _ENTRY_HEADER.pack(ENTRY_MARKER, len(payload), zlib.crc32(payload))
    return header + payload


def _file_header(kind: int) -> bytes:
    return _FILE_HEADER.pack(MAGIC, FORMAT_VERSION, kind)


def _is_path(obj: Any) -> bool:
    return isinstance(obj, (str, bytes, os.PathLike))


def write_snapshot(dest: Destination, snap: RawSnapshot) -> None:
    """Write *snap* (full or aggregated) as a snapshot file.

    *dest* is a path (the file is created or replaced) or a binary file
    object open for writing (written at its current position, left open).

    Raises TypeError if ``snap.attrs`` holds a value that does not round-trip
    exactly through JSON, and ValueError for out-of-range numbers or
    inconsistent block arrays.  Nothing is written if encoding fails.
    """
    data = _file_header(KIND_SNAPSHOT) + _encode_entry(snap)
    if _is_path(dest):
        with open(dest, "wb") as f:  # type: ignore[arg-type]
            f.write(data)
    else:
        dest.write(data)  # type: ignore[union-attr]
        flush = getattr(dest, "flush", None)
        if flush is not None:
            flush()


class TimelineWriter:
    """Append snapshots to a timeline file, one entry per :meth:`append`.

    Only the entry being written is held in memory, and the file is flushed
    after each append, so a long-running watcher can be killed at any moment:
    the entries already appended stay readable (see :func:`iter_timeline`).

    *dest* is a path, or (mode ``"w"`` only) a binary file object open for
    writing, which is left open by :meth:`close`.  Mode ``"w"`` creates or
    truncates the file; mode ``"a"`` appends to an existing timeline (or
    creates it), first dropping an incomplete last entry left by a writer
    that was killed mid-append.  With ``fsync=True`` every append is also
    forced to stable storage.
    """

    def __init__(
        self, dest: Destination, mode: str = "w", *, fsync: bool = False
    ) -> None:
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' or 'a', not {mode!r}")
        self._fsync = fsync
        self._sections = _RepeatedSections()
        self._owned = _is_path(dest)
        self._file: Optional[BinaryIO] = None
        if not self._owned:
            if mode != "w":
                raise ValueError("mode 'a' needs a path, not a file object")
            self._file = dest  # type: ignore[assignment]
            self._write(_file_header(KIND_TIMELINE))
            return
        if mode == "w":
            self._file = open(dest, "wb")  # type: ignore[arg-type]
            self._write(_file_header(KIND_TIMELINE))
            return
        try:
            f = open(dest, "r+b")  # type: ignore[arg-type]
        except FileNotFoundError:
            f = open(dest, "w+b")  # type: ignore[arg-type]
        try:
            end = _valid_timeline_end(f)
            if end is None:
                f.seek(0)
                f.truncate()
                self._file = f
                self._write(_file_header(KIND_TIMELINE))
            else:
                f.seek(end)
                f.truncate()
                self._file = f
        except BaseException:
            f.close()
            raise

    def _write(self, data: bytes) -> None:
        f = self._file
        assert f is not None
        f.write(data)
        f.flush()
        if self._fsync:
            os.fsync(f.fileno())

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._file is None

    def append(self, snap: RawSnapshot) -> None:
        """Encode *snap* and append it as one entry, then flush."""
        if self._file is None:
            raise ValueError("append() on a closed TimelineWriter")
        self._write(_encode_entry(snap, self._sections))

    def close(self) -> None:
        """Close the file (a file object passed in is flushed, not closed)."""
        f, self._file = self._file, None
        if f is not None and self._owned:
            f.close()

    def __enter__(self) -> TimelineWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _valid_timeline_end(f: BinaryIO) -> Optional[int]:
    """Return the offset just after the last complete entry of timeline *f*.

    Returns None for an empty file.  Only entry headers are read (payloads
    are skipped with seek), so this is cheap even for a long timeline.
    """
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return None
    f.seek(0)
    if size < _FILE_HEADER.size and _file_header(KIND_TIMELINE).startswith(
        f.read(size)
    ):
        return None  # a header cut short: start afresh
    f.seek(0)
    src = _Source(f)
    kind, version = _read_file_header(src)
    if kind != KIND_TIMELINE:
        raise FileFormatError("cannot append: this is a snapshot file, not a timeline")
    if version != FORMAT_VERSION:
        raise FileFormatError(
            f"cannot append to a format version {version} timeline; this "
            f"pyleakhunt writes version {FORMAT_VERSION}"
        )
    pos = _FILE_HEADER.size
    while pos < size:
        if size - pos < _ENTRY_HEADER.size:
            return pos
        f.seek(pos)
        marker, length, _crc = _ENTRY_HEADER.unpack(f.read(_ENTRY_HEADER.size))
        if marker != ENTRY_MARKER:
            raise FileFormatError(
                f"cannot append: bad entry marker {marker!r} at offset {pos}"
            )
        if length > size - pos - _ENTRY_HEADER.size:
            return pos
        pos += _ENTRY_HEADER.size + length
    return pos


# ==========================================================================
# Reading
# ==========================================================================


class _Source:
    """A binary stream read with bounded, chunked reads and offset tracking."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.offset = 0
        #: The file's format version, once its header is read.
        self.version = FORMAT_VERSION

    def read(self, n: int) -> bytes:
        """Read up to *n* bytes; fewer only at end of data.

        Reads in chunks, so a huge *n* never allocates more than the data
        that is actually there.
        """
        if n <= _READ_CHUNK:
            data = self.f.read(n)
            while len(data) < n:
                more = self.f.read(n - len(data))
                if not more:
                    break
                data += more
        else:
            buf = bytearray()
            while len(buf) < n:
                more = self.f.read(min(_READ_CHUNK, n - len(buf)))
                if not more:
                    break
                buf += more
            data = bytes(buf)
        self.offset += len(data)
        return data


def _open(src: Source) -> Tuple[BinaryIO, bool]:
    if _is_path(src):
        return open(src, "rb"), True  # type: ignore[arg-type]
    if not hasattr(src, "read"):
        raise TypeError(
            f"expected a path or a binary file object, not {type(src).__name__}"
        )
    return src, False  # type: ignore[return-value]


def _read_file_header(src: _Source) -> Tuple[int, int]:
    data = src.read(_FILE_HEADER.size)
    if not data:
        raise FileFormatError("empty file: not a pyleakhunt file")
    if data[:1] == b"\x80":
        raise FileFormatError(
            "this looks like a tracemalloc pickle; use "
            "pyleakhunt.fileformat.import_tracemalloc_pickle(path) on a trusted file"
        )
    if not data.startswith(MAGIC[: len(data)]):
        raise FileFormatError(
            "not a pyleakhunt file: bad magic at offset 0 "
            f"(expected {MAGIC!r}, found {data[:8]!r})"
        )
    if len(data) < _FILE_HEADER.size:
        raise FileFormatError(
            f"truncated file header: {len(data)} of {_FILE_HEADER.size} bytes"
        )
    _magic, version, kind = _FILE_HEADER.unpack(data)
    if version == 0 or version > FORMAT_VERSION:
        raise FileFormatError(
            f"unsupported format version {version} at offset 8: this pyleakhunt "
            f"reads versions 1 to {FORMAT_VERSION}; upgrade pyleakhunt"
        )
    if kind not in (KIND_SNAPSHOT, KIND_TIMELINE):
        raise FileFormatError(f"unknown file kind {kind:#04x} at offset 10")
    src.version = version
    return kind, version


def _read_entry(src: _Source, index: int) -> Optional[Tuple[bytes, int]]:
    """Read entry *index*; return (payload, payload offset) or None at EOF."""
    start = src.offset
    header = src.read(_ENTRY_HEADER.size)
    if not header:
        return None
    if len(header) < _ENTRY_HEADER.size:
        raise _TruncatedError(
            f"truncated entry {index} at offset {start}: the data ends inside "
            f"its {_ENTRY_HEADER.size}-byte header"
        )
    marker, length, crc = _ENTRY_HEADER.unpack(header)
    if marker != ENTRY_MARKER:
        raise FileFormatError(
            f"entry {index} at offset {start}: bad marker {marker!r} "
            f"(expected {ENTRY_MARKER!r})"
        )
    if length > MAX_ENTRY_BYTES:
        raise FileFormatError(
            f"entry {index} at offset {start}: declared length {length} exceeds "
            f"the limit of {MAX_ENTRY_BYTES} bytes"
        )
    payload = src.read(length)
    if len(payload) < length:
        raise _TruncatedError(
            f"truncated entry {index} at offset {start}: it declares {length} "
            f"payload bytes but only {len(payload)} remain"
        )
    if zlib.crc32(payload) != crc:
        raise FileFormatError(
            f"entry {index} at offset {start}: CRC-32 mismatch, the entry is corrupt"
        )
    return payload, start + _ENTRY_HEADER.size


class _Cursor:
    """Bounds-checked reader over decoded section content."""

    __slots__ = ("data", "pos", "where")

    def __init__(self, data: Union[bytes, memoryview], where: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.where = where

    def fail(self, message: str) -> NoReturn:
        raise FileFormatError(f"{self.where}, byte {self.pos}: {message}")

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> memoryview:
        if n > self.remaining():
            self.fail(f"{what} needs {n} bytes but only {self.remaining()} remain")
        view = self.data[self.pos : self.pos + n]
        self.pos += n
        return view

    def u64(self, what: str) -> int:
        return int.from_bytes(self.take(8, what), "little")

    def count(self, what: str, limit: int) -> int:
        n = self.u64(f"{what} count")
        if n > limit:
            self.fail(f"{what} count {n} exceeds the limit of {limit}")
        # every item takes at least one byte in each of its columns
        if n > self.remaining():
            self.fail(f"{what} count {n} exceeds the {self.remaining()} bytes left")
        return n

    def column(
        self, n: int, typecode: str, what: str, bound: Optional[int] = None
    ) -> array:
        """Decode a column of *n* unsigned values (see ``_encode_column``).

        With *bound*, every value must be below it.
        """
        width = self.take(1, f"{what} width")[0]
        itemsize = array(typecode).itemsize
        if width not in (1, 2, 4, 8) or width > itemsize:
            self.pos -= 1
            self.fail(f"{what}: invalid byte width {width}")
        planes = self.take(n * width, what)
        buf = bytearray(n * itemsize)
        for k in range(width):
            buf[k::itemsize] = planes[k * n : (k + 1) * n]
        values = array(typecode)
        values.frombytes(buf)
        if not _LITTLE:
            values.byteswap()
        if bound is not None and n and bound < 1 << (8 * width):
            if width == 1:
                bad = bytes(planes).translate(None, bytes(range(min(bound, 256))))
            else:
                bad = max(values) >= bound
            if bad:
                self.fail(f"{what}: a value is out of range (must be < {bound})")
        return values

    def signed_column(self, n: int, what: str) -> List[int]:
        values = self.column(n, _U64, what)
        if values.count(0) == n:  # the usual domain and tag columns
            return [0] * n
        return [(z >> 1) ^ -(z & 1) for z in values]

    def done(self) -> None:
        if self.pos != len(self.data):
            self.fail(f"{self.remaining()} unexpected bytes at the end of the section")


def _decompress(data: memoryview, raw_len: int, where: str) -> bytes:
    if raw_len > MAX_SECTION_BYTES:
        raise FileFormatError(
            f"{where}: decoded length {raw_len} exceeds the limit of "
            f"{MAX_SECTION_BYTES} bytes"
        )
    if raw_len > len(data) * _MAX_ZLIB_RATIO + 1024:
        raise FileFormatError(
            f"{where}: decoded length {raw_len} is impossible for "
            f"{len(data)} compressed bytes"
        )
    try:
        dec = zlib.decompressobj()
        # max_length=0 would mean "unlimited": ask for at least one byte.
        out = dec.decompress(data, max(raw_len, 1))
        if len(out) > raw_len:
            raise FileFormatError(
                f"{where}: decompresses to more than the declared {raw_len} bytes"
            )
        if len(out) == raw_len and not dec.eof:
            # Only the end of the stream may remain: any further byte is a lie.
            if dec.decompress(dec.unconsumed_tail, 1):
                raise FileFormatError(
                    f"{where}: decompresses to more than the declared {raw_len} bytes"
                )
    except zlib.error as exc:
        raise FileFormatError(f"{where}: corrupt zlib data ({exc})") from None
    if len(out) != raw_len or not dec.eof:
        raise FileFormatError(
            f"{where}: zlib data is truncated ({len(out)} of {raw_len} bytes)"
        )
    if dec.unused_data:
        raise FileFormatError(f"{where}: garbage after the zlib stream")
    return out


#: What one entry's tables decoded to, for the next entry of the same
#: timeline: section id -> (decoded section content, decoded table,
#: (flags, decoded length) and bytes of the section as stored); and a
#: column's name -> (its bytes, (its length, its bound), its values).
_Memo = Dict[Any, Tuple[Any, ...]]


#: A section of an entry: its decoded content, where it is (for errors),
#: its (flags, decoded length) and its bytes as stored.
_Section = Tuple[bytes, str, Tuple[int, int], memoryview]


def _split_sections(
    payload: bytes, base: int, entry_where: str, memo: Optional[_Memo] = None
) -> Dict[int, _Section]:
    """Split an entry payload into {section id: (decoded content, where,
    (flags, decoded length), bytes as stored)}.

    A table section stored byte for byte as in the previous entry (*memo*)
    is not decompressed again: its content is the previous one.
    """
    view = memoryview(payload)
    sections: Dict[int, _Section] = {}
    pos = 0
    hsize = _SECTION_HEADER.size
    while pos < len(view):
        where = f"{entry_where}, section header at offset {base + pos}"
        if len(view) - pos < hsize:
            raise FileFormatError(f"{where}: truncated section header")
        sid, flags, stored, raw_len = _SECTION_HEADER.unpack_from(view, pos)
        name = _SECTION_NAMES.get(sid, f"#{sid}")
        where = f"{entry_where}, section {name} at offset {base + pos}"
        pos += hsize
        if stored > len(view) - pos:
            raise FileFormatError(
                f"{where}: stored length {stored} exceeds the "
                f"{len(view) - pos} bytes left in the entry"
            )
        data = view[pos : pos + stored]
        pos += stored
        if sid >= FIRST_OPTIONAL_SECTION:
            continue  # optional section from a newer writer: skip it
        if sid not in _SECTION_NAMES:
            raise FileFormatError(
                f"{where}: unknown required section (written by a newer pyleakhunt?)"
            )
        if sid in sections:
            raise FileFormatError(f"{where}: duplicate section")
        if flags & ~_SECTION_ZLIB:
            raise FileFormatError(f"{where}: unknown section flags {flags:#04x}")
        held = memo.get(sid) if memo is not None else None
        if (
            held is not None
            and held[2] == (flags, raw_len)
            and len(held[3]) == stored
            and held[3] == bytes(data)
        ):
            content = held[0]  # the same stored bytes decode the same
        elif flags & _SECTION_ZLIB:
            content = _decompress(data, raw_len, where)
        else:
            if raw_len != stored:
                raise FileFormatError(
                    f"{where}: uncompressed section with decoded length {raw_len} "
                    f"!= stored length {stored}"
                )
            content = bytes(data)
        sections[sid] = (content, where, (flags, raw_len), data)
    return sections


def _remembered(memo: Optional[_Memo], sid: int, content: bytes) -> Any:
    """The table decoded from the same *content* in the previous entry."""
    if memo is None:
        return None
    held = memo.get(sid)
    if held is None or held[0] != content:
        return None
    return held[1]


def _repeated_column(
    cur: _Cursor,
    memo: Optional[_Memo],
    n: int,
    typecode: str,
    what: str,
    bound: Optional[int] = None,
) -> array:
    """`_Cursor.column`, but a column byte for byte the same as in the
    previous entry (as many, with the same *bound*) is not decoded nor checked
    again: its values are the previous ones.  The sites' traceback numbers
    and depths rarely change from one entry to the next."""
    start = cur.pos
    held = memo.get(what) if memo is not None else None
    if held is not None and held[1] == (n, bound):
        stored = held[0]
        if bytes(cur.data[start : start + len(stored)]) == stored:
            cur.pos += len(stored)
            return held[2]  # type: ignore[no-any-return]
    values = cur.column(n, typecode, what, bound)
    if memo is not None:
        memo[what] = (bytes(cur.data[start : cur.pos]), (n, bound), values)
    return values


def _decode_columns(
    payload: bytes,
    base: int,
    entry_where: str,
    memo: Optional[_Memo] = None,
    version: int = FORMAT_VERSION,
) -> RawColumns:
    """Decode one entry, its sites as columns.  With *memo* (one per
    timeline being read), a string, frame or traceback table byte for byte
    the same as the previous entry's is neither decompressed nor decoded
    again: the previous entry's objects are shared.  The entries of a
    timeline mostly repeat their tables, and rebuilding every traceback of
    every entry was most of the reading."""
    sections = _split_sections(payload, base, entry_where, memo)

    def cursor(sid: int) -> Optional[_Cursor]:
        if sid not in sections:
            return None
        content, where = sections[sid][:2]
        return _Cursor(content, f"{where} (decoded content)")

    cur = cursor(SECTION_META)
    if cur is None:
        raise FileFormatError(f"{entry_where}: missing META section")
    if cur.remaining() < _META.size:
        cur.fail(f"META section is {cur.remaining()} bytes, expected {_META.size}")
    # Bytes after the known META fields are reserved for future versions.
    fields = _META.unpack_from(cur.data, 0)
    flags, _reserved, tb_limit, sample_bytes, lost_blocks, pid = fields[:6]
    timestamp, n_blocks = fields[6:]
    if flags & ~_META_FULL:
        cur.fail(f"unknown META flags {flags:#x}")
    full = bool(flags & _META_FULL)
    if n_blocks > MAX_BLOCKS or (n_blocks and not full):
        cur.fail(f"invalid block count {n_blocks}")

    strings: List[str] = []
    frames: List[Tuple[str, int]] = []
    tracebacks: List[RawFrames] = []
    # Each table is shared only when the tables it refers to are too.
    shared = [
        _remembered(memo, sid, sections[sid][0]) if sid in sections else None
        for sid in (SECTION_STRINGS, SECTION_FRAMES, SECTION_TRACEBACKS)
    ]
    if shared[0] is not None:
        strings = shared[0]
    else:
        shared = [None, None, None]
    if shared[1] is not None:
        frames = shared[1]
    else:
        shared[2] = None
    if shared[2] is not None:
        tracebacks = shared[2]
    cur = cursor(SECTION_STRINGS)
    if cur is not None and shared[0] is None:
        n = cur.count("string", MAX_STRINGS)
        lengths = cur.column(n, _U32, "string lengths", MAX_STRING_BYTES + 1)
        blob = bytes(cur.take(sum(lengths), "string data"))
        cur.done()
        ends = list(itertools.accumulate(lengths))
        try:
            strings = [
                str(blob[a:b], "utf-8", "surrogatepass")
                for a, b in zip([0, *ends], ends)
            ]
        except UnicodeDecodeError as exc:
            cur.fail(f"invalid UTF-8 in the string table ({exc.reason})")

    cur = cursor(SECTION_FRAMES)
    if cur is not None and shared[1] is None:
        n = cur.count("frame", MAX_FRAMES)
        files = cur.column(n, _U32, "frame filenames", len(strings))
        lines = cur.signed_column(n, "frame linenos")
        cur.done()
        frames = list(zip(map(strings.__getitem__, files), lines))

    cur = cursor(SECTION_TRACEBACKS)
    if cur is not None and shared[2] is None:
        n = cur.count("traceback", MAX_TRACEBACKS)
        depths = cur.column(n, _U32, "traceback lengths", MAX_TRACEBACK_DEPTH + 1)
        total = cur.count("traceback frame", MAX_TRACEBACK_FRAMES_TOTAL)
        if total != sum(depths):
            cur.fail(
                f"traceback frame count {total} != {sum(depths)}, the sum of the "
                "traceback lengths"
            )
        flat = cur.column(total, _U32, "traceback frames", len(frames))
        cur.done()
        get = frames.__getitem__
        starts = itertools.accumulate(depths, initial=0)
        tracebacks = [tuple(map(get, flat[a : a + d])) for a, d in zip(starts, depths)]
    if memo is not None:
        for sid, table in (
            (SECTION_STRINGS, strings),
            (SECTION_FRAMES, frames),
            (SECTION_TRACEBACKS, tracebacks),
        ):
            memo.pop(sid, None)
            if sid in sections:
                content, _where, header, stored = sections[sid]
                memo[sid] = (content, table, header, bytes(stored))

    empty = array(_U64)
    domains: List[int] = []
    tbs = array(_U32)
    nframes = counts = sizes = lows = empty
    tags: List[int] = []
    cur = cursor(SECTION_SITES)
    if cur is not None:
        n = cur.count("site", MAX_SITES)
        domains = cur.signed_column(n, "site domains")
        tbs = _repeated_column(cur, memo, n, _U32, "site tracebacks", len(tracebacks))
        nframes = _repeated_column(cur, memo, n, _U64, "site total_nframe")
        counts = cur.column(n, _U64, "site counts")
        sizes = cur.column(n, _U64, "site sizes")
        lows = cur.column(n, _U64, "site lows")
        tags = cur.signed_column(n, "site tags")
        cur.done()
        if version == 1:
            lows = array(_U64, bytes(8 * n))  # version 1 had peaks there

    tag_names: Dict[int, str] = {}
    cur = cursor(SECTION_TAGS)
    if cur is not None:
        n = cur.count("tag", MAX_TAGS)
        numbers = cur.signed_column(n, "tag numbers")
        names = cur.column(n, _U32, "tag names", len(strings))
        cur.done()
        tag_names = dict(zip(numbers, map(strings.__getitem__, names)))
        if len(tag_names) != n:
            cur.fail("duplicate tag numbers")

    attrs: Dict[str, Any] = {}
    cur = cursor(SECTION_ATTRS)
    if cur is not None:
        if cur.remaining() > MAX_ATTRS_BYTES:
            cur.fail(f"attrs exceed the limit of {MAX_ATTRS_BYTES} bytes")
        try:
            attrs = json.loads(str(cur.data, "utf-8"))
        except (ValueError, RecursionError) as exc:
            cur.fail(f"invalid attrs JSON ({type(exc).__name__}: {exc})")
        if type(attrs) is not dict:
            cur.fail("attrs JSON is not an object")
        try:
            _check_json(attrs, "", 0)
        except TypeError as exc:
            cur.fail(str(exc))

    block_sites: Optional[array] = None
    block_sizes: Optional[array] = None
    cur = cursor(SECTION_BLOCKS)
    if cur is not None:
        if not full:
            cur.fail("BLOCKS section in an aggregated snapshot")
        block_sites = cur.column(n_blocks, _U32, "block sites", len(tbs))
        block_sizes = cur.column(n_blocks, _U64, "block sizes")
        cur.done()
    elif full:
        raise FileFormatError(f"{entry_where}: full snapshot without BLOCKS section")

    return RawColumns(
        traceback_limit=tb_limit,
        tracebacks=tracebacks,
        traceback_index=tbs,
        domains=domains,
        total_nframes=nframes,
        counts=counts,
        sizes=sizes,
        lows=lows,
        tags=tags,
        block_sites=block_sites,
        block_sizes=block_sizes,
        tag_names=tag_names,
        sample_bytes=sample_bytes,
        lost_blocks=lost_blocks,
        pid=pid,
        timestamp=timestamp,
        attrs=attrs,
    )


def _read_one(
    src: _Source, index: int, memo: Optional[_Memo] = None
) -> Optional[RawSnapshot]:
    columns = _read_columns(src, index, memo)
    return None if columns is None else columns.to_snapshot()


def _read_columns(
    src: _Source, index: int, memo: Optional[_Memo] = None
) -> Optional[RawColumns]:
    entry = _read_entry(src, index)
    if entry is None:
        return None
    payload, base = entry
    where = f"entry {index} at offset {base - _ENTRY_HEADER.size}"
    return _decode_columns(payload, base, where, memo, src.version)


def _with_source(src: Source, func: Callable[[_Source, int], Any]) -> Any:
    f, owned = _open(src)
    try:
        source = _Source(f)
        kind, _version = _read_file_header(source)
        return func(source, kind)
    finally:
        if owned:
            f.close()


def _snapshot_body(src: _Source) -> RawSnapshot:
    snap = _read_one(src, 0)
    if snap is None:
        raise _TruncatedError(
            f"truncated snapshot file: no entry after the header (offset {src.offset})"
        )
    if src.read(1):
        raise FileFormatError(
            f"trailing data after the snapshot entry at offset {src.offset - 1}"
        )
    return snap


def _timeline_body(src: _Source) -> List[RawSnapshot]:
    snaps = []
    memo: _Memo = {}
    try:
        while True:
            snap = _read_one(src, len(snaps), memo)
            if snap is None:
                return snaps
            snaps.append(snap)
    except _TruncatedError as exc:
        raise _TruncatedError(
            f"{exc}; the writer was probably killed. Use iter_timeline(src, "
            f"allow_truncated_tail=True) to read the {len(snaps)} complete entries"
        ) from None


def read_snapshot(src: Source) -> RawSnapshot:
    """Read a snapshot file (a path or a binary file object).

    Raises FileFormatError if the data is not a valid snapshot file,
    including for a timeline file (use :func:`read_timeline` or
    :func:`read_any`) and for a tracemalloc pickle (see
    :func:`import_tracemalloc_pickle`).
    """

    def body(source: _Source, kind: int) -> RawSnapshot:
        if kind != KIND_SNAPSHOT:
            raise FileFormatError(
                "this is a timeline file, not a snapshot file; use "
                "pyleakhunt.fileformat.read_timeline() or read_any()"
            )
        return _snapshot_body(source)

    return _with_source(src, body)  # type: ignore[no-any-return]


def read_timeline(src: Source) -> List[RawSnapshot]:
    """Read every entry of a timeline file.

    A timeline whose last entry is incomplete (its writer was killed) raises
    FileFormatError; ``iter_timeline(src, allow_truncated_tail=True)`` reads
    its complete entries.
    """

    def body(source: _Source, kind: int) -> List[RawSnapshot]:
        if kind != KIND_TIMELINE:
            raise FileFormatError(
                "this is a snapshot file, not a timeline; use "
                "pyleakhunt.fileformat.read_snapshot() or read_any()"
            )
        return _timeline_body(source)

    return _with_source(src, body)  # type: ignore[no-any-return]


def read_any(src: Source) -> List[RawSnapshot]:
    """Read a snapshot file (``[snapshot]``) or a timeline (all its entries)."""

    def body(source: _Source, kind: int) -> List[RawSnapshot]:
        if kind == KIND_SNAPSHOT:
            return [_snapshot_body(source)]
        return _timeline_body(source)

    return _with_source(src, body)  # type: ignore[no-any-return]


#: What `file_kind` says a file is.
FILE_KINDS = ("timeline", "snapshot", "census", "core", "unknown")
#: The first bytes of an ELF file (a core dump, for the census).
_ELF_MAGIC = b"\x7fELF"
#: Bytes of the file header that starts every pyleakhunt file: a timeline's
#: first entry starts here.
HEADER_SIZE = _FILE_HEADER.size
#: Bytes `file_kind` reads: the file header, or the start of a JSON census.
_KIND_PROBE = 64


def file_kind(path: Union[str, os.PathLike[str]]) -> str:
    """What kind of file *path* is, from its first bytes only.

    ``"timeline"`` or ``"snapshot"`` for a pyleakhunt file of that kind,
    ``"core"`` for an ELF file (a core dump, read by the census),
    ``"census"`` for a census saved as JSON (``pyleakhunt census -o``),
    ``"unknown"`` for anything else, a pyleakhunt file of an unknown kind
    or a file too short to tell included: reading it as the kind a command
    expects then says precisely what is wrong.  OSError if it cannot be read.
    """
    with open(path, "rb") as f:
        head = f.read(_KIND_PROBE)
    if len(head) >= HEADER_SIZE and head.startswith(MAGIC):
        kind = head[10]
        if kind == KIND_TIMELINE:
            return "timeline"
        if kind == KIND_SNAPSHOT:
            return "snapshot"
        return "unknown"
    if head.startswith(_ELF_MAGIC):
        return "core"
    if head.lstrip()[:1] == b"{":
        return "census"
    return "unknown"


@overload
def iter_timeline(
    src: Source, *, allow_truncated_tail: bool = False, columns: Literal[False] = ...
) -> Iterator[RawSnapshot]: ...


@overload
def iter_timeline(
    src: Source, *, allow_truncated_tail: bool = False, columns: Literal[True]
) -> Iterator[RawColumns]: ...


def iter_timeline(
    src: Source, *, allow_truncated_tail: bool = False, columns: bool = False
) -> Iterator[Union[RawSnapshot, RawColumns]]:
    """Yield the entries of a timeline file one by one (streaming).

    With *columns*, each entry is a `RawColumns` (its sites as columns,
    cheaper to read: see `RawColumns.to_snapshot`), else a `RawSnapshot`.

    Only one entry is in memory at a time.  If the data ends inside an entry
    (a watcher killed mid-append), FileFormatError is raised after the
    complete entries have been yielded, unless *allow_truncated_tail* is
    true, in which case iteration just stops there.  Corruption anywhere
    (bad checksum, bad marker, invalid content) always raises.  Errors about
    the file header are raised on the first ``next()``.
    """
    f, owned = _open(src)
    try:
        source = _Source(f)
        kind, _version = _read_file_header(source)
        if kind != KIND_TIMELINE:
            raise FileFormatError(
                "this is a snapshot file, not a timeline; use "
                "pyleakhunt.fileformat.read_snapshot() or read_any()"
            )
        index = 0
        memo: _Memo = {}
        while True:
            try:
                snap: Any = _read_columns(source, index, memo)
            except _TruncatedError:
                if allow_truncated_tail:
                    return
                raise
            if snap is None:
                return
            yield snap if columns else snap.to_snapshot()
            index += 1
    finally:
        if owned:
            f.close()


# ==========================================================================
# tracemalloc pickle import
# ==========================================================================

_PICKLE_ALLOWED = {("tracemalloc", "Snapshot"), ("tracemalloc", "_Traces")}


class _TracemallocUnpickler(pickle.Unpickler):
    """Unpickler that can only create tracemalloc snapshot objects.

    This narrows what a pickle can do, but it is not a security boundary:
    only unpickle files you trust.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: not part of a tracemalloc snapshot"
        )


def _bad_pickle(message: str) -> NoReturn:
    raise FileFormatError(f"not a valid tracemalloc snapshot pickle: {message}")


def import_tracemalloc_pickle(path: Source) -> RawSnapshot:
    """Convert a pickle written by ``tracemalloc.Snapshot.dump`` (UNSAFE).

    Unpickling can execute code, so this always emits a
    :class:`PickleImportWarning`: only use it on files you trust.  Each
    trace becomes one block; traces with the same (domain, frames,
    total_nframe) are grouped into one site (low unknown, so 0; untagged).
    """
    warnings.warn(
        PickleImportWarning(
            "unpickling can execute arbitrary code: only import tracemalloc "
            "pickles from trusted files"
        ),
        stacklevel=2,
    )
    import tracemalloc

    f, owned = _open(path)
    try:
        try:
            obj = _TracemallocUnpickler(f).load()
        except Exception as exc:
            _bad_pickle(f"{type(exc).__name__}: {exc}")
    finally:
        if owned:
            f.close()

    if not isinstance(obj, tracemalloc.Snapshot):
        _bad_pickle(f"it holds a {type(obj).__name__}, not a tracemalloc.Snapshot")
    traces = getattr(getattr(obj, "traces", None), "_traces", None)
    limit = getattr(obj, "traceback_limit", None)
    if type(traces) is not list or type(limit) is not int:
        _bad_pickle("missing traces or traceback_limit")

    site_index: Dict[Tuple[int, RawFrames, Optional[int]], int] = {}
    counts: List[int] = []
    sizes: List[int] = []
    block_sites = array(_U32)
    block_sizes: List[int] = []
    for trace in traces:
        if type(trace) is not tuple or len(trace) not in (3, 4):
            _bad_pickle(f"unexpected trace {trace!r:.80}")
        domain, size, frames = trace[:3]
        total_nframe = trace[3] if len(trace) == 4 else None
        key = (domain, frames, total_nframe)
        try:
            idx = site_index.get(key)
        except TypeError:  # unhashable
            _bad_pickle(f"unexpected trace {trace!r:.80}")
        if idx is None:
            if (
                type(domain) is not int
                or type(size) is not int
                or not (total_nframe is None or type(total_nframe) is int)
                or type(frames) is not tuple
                or not all(
                    type(fr) is tuple
                    and len(fr) == 2
                    and type(fr[0]) is str
                    and type(fr[1]) is int
                    for fr in frames
                )
            ):
                _bad_pickle(f"unexpected trace {trace!r:.80}")
            idx = site_index[key] = len(counts)
            counts.append(0)
            sizes.append(0)
        if type(size) is not int or not 0 <= size < _U64_LIMIT:
            _bad_pickle(f"unexpected trace {trace!r:.80}")
        counts[idx] += 1
        sizes[idx] += size
        block_sites.append(idx)
        block_sizes.append(size)

    sites = [
        RawSite(domain, frames, total_nframe, count, size)
        for (domain, frames, total_nframe), count, size in zip(
            site_index, counts, sizes
        )
    ]
    return RawSnapshot(
        traceback_limit=limit,
        sites=sites,
        block_sites=block_sites,
        block_sizes=_u64_array(block_sizes, "trace sizes"),
    )
