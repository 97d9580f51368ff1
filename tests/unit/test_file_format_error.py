"""``pyleakhunt.FileFormatError``: what `Snapshot.load` raises on a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

import pyleakhunt
from pyleakhunt import fileformat


def test_the_package_exports_the_file_format_error():
    from pyleakhunt import FileFormatError

    assert FileFormatError is fileformat.FileFormatError
    assert issubclass(FileFormatError, ValueError)
    assert "FileFormatError" in pyleakhunt.__all__
    namespace: dict = {}
    exec("from pyleakhunt import *", namespace)
    assert namespace["FileFormatError"] is FileFormatError


def test_other_missing_names_still_raise_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        pyleakhunt.no_such_name  # noqa: B018


def _dumped_snapshot(path: Path) -> bytes:
    pyleakhunt.start(1)
    try:
        kept = [bytearray(1000) for _ in range(10)]
        pyleakhunt.take_snapshot().dump(path)
        del kept
    finally:
        pyleakhunt.stop()
    return path.read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"not a snapshot at all", id="garbage"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(
            lambda data: data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:],
            id="flipped-byte",
        ),
    ],
)
def test_snapshot_load_of_a_bad_file_raises_file_format_error(tmp_path, damage):
    good = tmp_path / "good.plh"
    data = _dumped_snapshot(good)
    assert pyleakhunt.Snapshot.load(good).statistics("lineno")
    bad = tmp_path / "bad.plh"
    bad.write_bytes(damage(data))
    with pytest.raises(pyleakhunt.FileFormatError):
        pyleakhunt.Snapshot.load(bad)
