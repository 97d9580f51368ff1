"""pprof export: the gzipped ``profile.proto`` that ``go tool pprof`` reads.

The format is Google's ``profile.proto``
(https://github.com/google/pprof/blob/main/proto/profile.proto), read by
``go tool pprof``, Pyroscope, Parca, Grafana and most continuous profilers.
It is protobuf, encoded here by hand with the standard library: the few
message types a heap profile needs are small, and the wire format
(varints and length-prefixed fields) is a page of code.

What a pyleakhunt profile holds:

- two sample types, like Go's heap profile: ``inuse_objects`` (count) and
  ``inuse_space`` (bytes), the default;
- one sample per call site, its locations the frames of the traceback,
  most recent first (the order pprof expects);
- one location per distinct ``(filename, lineno)``, and one function per
  distinct name (see `pyleakhunt.export.names`); each location's line
  carries the line number, so ``pprof -lines`` shows lines;
- labels: ``endpoint`` for memory tagged by the WSGI/ASGI integrations,
  ``domain`` for the numbered domains of C extensions;
- ``period_type`` space/bytes and ``period`` the sampling gap (1 when
  exact); comments (``pprof -comments``) say whether the values are
  estimates, and of which process and moment.

Values are already scaled: an estimated profile holds the unbiased
estimates, so readers must not (and do not) scale them again.
"""

from __future__ import annotations

import gzip
import os
from typing import IO, Dict, List, Tuple, Union

from ..snapshot import Snapshot
from .names import FrameNamer
from .stacks import StackProfile, as_profile

__all__ = ["encode_pprof", "pprof_bytes", "write_pprof"]

# Field numbers of profile.proto.
_PROFILE_SAMPLE_TYPE = 1
_PROFILE_SAMPLE = 2
_PROFILE_MAPPING = 3
_PROFILE_LOCATION = 4
_PROFILE_FUNCTION = 5
_PROFILE_STRING_TABLE = 6
_PROFILE_TIME_NANOS = 9
_PROFILE_DURATION_NANOS = 10
_PROFILE_PERIOD_TYPE = 11
_PROFILE_PERIOD = 12
_PROFILE_COMMENT = 13
_PROFILE_DEFAULT_SAMPLE_TYPE = 14
_VALUE_TYPE_TYPE = 1
_VALUE_TYPE_UNIT = 2
_SAMPLE_LOCATION_ID = 1
_SAMPLE_VALUE = 2
_SAMPLE_LABEL = 3
_LABEL_KEY = 1
_LABEL_STR = 2
_LABEL_NUM = 3
_MAPPING_ID = 1
_MAPPING_FILENAME = 5
_MAPPING_HAS_FUNCTIONS = 7
_MAPPING_HAS_FILENAMES = 8
_MAPPING_HAS_LINE_NUMBERS = 9
_LOCATION_ID = 1
_LOCATION_MAPPING_ID = 2
_LOCATION_LINE = 4
_LINE_FUNCTION_ID = 1
_LINE_LINE = 2
_FUNCTION_ID = 1
_FUNCTION_NAME = 2
_FUNCTION_SYSTEM_NAME = 3
_FUNCTION_FILENAME = 4
_FUNCTION_START_LINE = 5

_WIRE_VARINT = 0
_WIRE_BYTES = 2
_U64_MASK = (1 << 64) - 1

#: The single mapping every location belongs to: Python code, whose
#: functions, files and lines are already known (nothing to symbolize).
_MAPPING_ID_PYTHON = 1


# --------------------------------------------------------------------------
# Protobuf wire format


def _varint(value: int) -> bytes:
    """*value* as a base-128 varint (negative int64s as two's complement)."""
    value &= _U64_MASK
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _int_field(field: int, value: int) -> bytes:
    """A varint field; 0 is the default and is left out, as protobuf does."""
    if not value:
        return b""
    return _tag(field, _WIRE_VARINT) + _varint(value)


def _bytes_field(field: int, data: bytes) -> bytes:
    return _tag(field, _WIRE_BYTES) + _varint(len(data)) + data


def _packed_field(field: int, values: List[int]) -> bytes:
    """A repeated integer field, packed (one length-prefixed run)."""
    if not values:
        return b""
    return _bytes_field(field, b"".join(_varint(v) for v in values))


# --------------------------------------------------------------------------
# The profile


class _Strings:
    """The string table: index 0 is the empty string, as pprof requires."""

    def __init__(self) -> None:
        self.table: List[str] = [""]
        self._index: Dict[str, int] = {"": 0}

    def __call__(self, text: str) -> int:
        index = self._index.get(text)
        if index is None:
            index = self._index[text] = len(self.table)
            self.table.append(text)
        return index


def _value_type(strings: _Strings, type_name: str, unit: str) -> bytes:
    return _int_field(_VALUE_TYPE_TYPE, strings(type_name)) + _int_field(
        _VALUE_TYPE_UNIT, strings(unit)
    )


def encode_pprof(source: Union[Snapshot, StackProfile]) -> bytes:
    """The uncompressed ``profile.proto`` message of *source* (a snapshot,
    for its live memory, or a `StackProfile` such as a growth profile)."""
    profile = as_profile(source)
    strings = _Strings()
    namer = FrameNamer()
    out: List[bytes] = []

    out.append(
        _bytes_field(
            _PROFILE_SAMPLE_TYPE, _value_type(strings, "inuse_objects", "count")
        )
    )
    out.append(
        _bytes_field(_PROFILE_SAMPLE_TYPE, _value_type(strings, "inuse_space", "bytes"))
    )

    functions: Dict[Tuple[str, str], int] = {}
    function_messages: List[bytes] = []
    locations: Dict[Tuple[str, int], int] = {}
    location_messages: List[bytes] = []

    def location_id(filename: str, lineno: int) -> int:
        key = (filename, lineno)
        found = locations.get(key)
        if found is not None:
            return found
        name = namer.name(filename, lineno)
        function_key = (name.function, filename)
        function_id = functions.get(function_key)
        if function_id is None:
            function_id = functions[function_key] = len(functions) + 1
            function_messages.append(
                b"".join(
                    [
                        _int_field(_FUNCTION_ID, function_id),
                        _int_field(_FUNCTION_NAME, strings(name.function)),
                        _int_field(_FUNCTION_SYSTEM_NAME, strings(name.function)),
                        _int_field(_FUNCTION_FILENAME, strings(filename)),
                        _int_field(_FUNCTION_START_LINE, name.start_line),
                    ]
                )
            )
        found = locations[key] = len(locations) + 1
        line = _int_field(_LINE_FUNCTION_ID, function_id) + _int_field(
            _LINE_LINE, lineno
        )
        location_messages.append(
            b"".join(
                [
                    _int_field(_LOCATION_ID, found),
                    _int_field(_LOCATION_MAPPING_ID, _MAPPING_ID_PYTHON),
                    _bytes_field(_LOCATION_LINE, line),
                ]
            )
        )
        return found

    for sample in profile.samples:
        frames = sample.frames or (("<unknown>", 0),)
        ids = [location_id(filename, lineno) for filename, lineno in frames]
        message = [
            _packed_field(_SAMPLE_LOCATION_ID, ids),
            _packed_field(_SAMPLE_VALUE, [sample.count, sample.size]),
        ]
        for key, value in sample.labels:
            if isinstance(value, str):
                label = _int_field(_LABEL_KEY, strings(key)) + _int_field(
                    _LABEL_STR, strings(value)
                )
            else:
                label = _int_field(_LABEL_KEY, strings(key)) + _int_field(
                    _LABEL_NUM, value
                )
            message.append(_bytes_field(_SAMPLE_LABEL, label))
        out.append(_bytes_field(_PROFILE_SAMPLE, b"".join(message)))

    mapping = b"".join(
        [
            _int_field(_MAPPING_ID, _MAPPING_ID_PYTHON),
            _int_field(_MAPPING_FILENAME, strings("python")),
            _int_field(_MAPPING_HAS_FUNCTIONS, 1),
            _int_field(_MAPPING_HAS_FILENAMES, 1),
            _int_field(_MAPPING_HAS_LINE_NUMBERS, 1),
        ]
    )
    out.append(_bytes_field(_PROFILE_MAPPING, mapping))
    out += [_bytes_field(_PROFILE_LOCATION, m) for m in location_messages]
    out += [_bytes_field(_PROFILE_FUNCTION, m) for m in function_messages]

    out.append(_int_field(_PROFILE_TIME_NANOS, int(profile.timestamp * 1e9)))
    out.append(_int_field(_PROFILE_DURATION_NANOS, int(profile.duration * 1e9)))
    out.append(
        _bytes_field(_PROFILE_PERIOD_TYPE, _value_type(strings, "space", "bytes"))
    )
    out.append(_int_field(_PROFILE_PERIOD, profile.sample_bytes or 1))
    comments = [strings(comment) for comment in profile.comments]
    out.append(_packed_field(_PROFILE_COMMENT, comments))
    out.append(_int_field(_PROFILE_DEFAULT_SAMPLE_TYPE, strings("inuse_space")))
    # Last, once every string is interned.
    out += [_bytes_field(_PROFILE_STRING_TABLE, _utf8(text)) for text in strings.table]
    return b"".join(out)


def _utf8(text: str) -> bytes:
    """*text* as valid UTF-8 (protobuf strings must be), whatever it holds:
    a filename that was not valid UTF-8 keeps its odd characters escaped."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def pprof_bytes(source: Union[Snapshot, StackProfile]) -> bytes:
    """*source* as a gzipped pprof profile (the bytes of a ``.pb.gz`` file)."""
    return gzip.compress(encode_pprof(source), compresslevel=6, mtime=0)


def write_pprof(
    source: Union[Snapshot, StackProfile],
    dest: Union[str, os.PathLike[str], IO[bytes]],
) -> None:
    """Write *source* as a gzipped pprof profile to *dest* (a path, or a
    binary file object, left open)."""
    data = pprof_bytes(source)
    if isinstance(dest, (str, os.PathLike)):
        with open(dest, "wb") as f:
            f.write(data)
    else:
        dest.write(data)
