"""Bad input: each gives one clear line and a documented exit code, never a
crash or a traceback."""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import sys

import pytest
from census_victims import clean_env, run_cli, take_core

from pyleakhunt.census import BadInputError, census_core


def assert_one_line_error(result, code: int, words: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.startswith("pyleakhunt: error: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert words in result.stderr, result.stderr


def test_a_missing_file(tmp_path):
    result = run_cli(str(tmp_path / "nothing"))
    assert_one_line_error(result, 3, "does not exist")


def test_an_empty_file_and_a_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert_one_line_error(run_cli(str(empty)), 3, "is empty")
    assert_one_line_error(run_cli(str(tmp_path)), 3, "is a directory")


def test_a_file_that_is_not_elf(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("core dumped\n" * 10)
    assert_one_line_error(run_cli(str(text)), 3, "is not an ELF file")


def test_an_executable_is_not_a_core():
    result = run_cli(os.path.realpath(sys.executable))
    assert_one_line_error(result, 3, "not a core file")


def _patched_copy(core: str, path, offset: int, data: bytes, length: int = 1 << 16):
    with open(core, "rb") as f:
        head = bytearray(f.read(length))
    head[offset : offset + len(data)] = data
    path.write_bytes(bytes(head))
    return str(path)


def test_a_core_of_another_architecture(victim_core, tmp_path):
    arm = _patched_copy(
        victim_core, tmp_path / "arm64.core", 18, struct.pack("<H", 183)
    )
    assert_one_line_error(run_cli(arm), 3, "is for AArch64 (arm64); only x86-64")
    x86 = _patched_copy(victim_core, tmp_path / "i386.core", 18, struct.pack("<H", 3))
    assert_one_line_error(run_cli(x86), 3, "is for x86 (32-bit)")
    with pytest.raises(BadInputError):
        census_core(arm)


def test_a_truncated_core(victim_core, tmp_path):
    half = tmp_path / "half.core"
    with open(victim_core, "rb") as f:
        half.write_bytes(f.read(os.path.getsize(victim_core) // 2))
    assert_one_line_error(run_cli(str(half)), 3, "is truncated")


def test_a_core_of_a_process_that_is_not_python(tmp_path):
    process = subprocess.Popen(["sleep", "60"], env=clean_env())
    try:
        core = take_core(process.pid, str(tmp_path / "sleep"))
    finally:
        process.kill()
        process.wait()
    assert_one_line_error(run_cli(core), 3, "not a Python process")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_damaged_core_never_crashes_the_scanner(victim_core, tmp_path, seed):
    """Garbage in the memory of the core (not its headers): every pointer
    is checked, so the census either copes or refuses the core."""
    damaged = tmp_path / f"damaged{seed}.core"
    shutil.copy(victim_core, damaged)
    size = os.path.getsize(damaged)
    rng = random.Random(seed)
    with open(damaged, "r+b") as f:
        for _ in range(20000):
            f.seek(rng.randrange(1 << 14, size - 8) & ~7)
            f.write(struct.pack("<Q", rng.getrandbits(64) if rng.random() < 0.5 else 0))
    result = run_cli(str(damaged), "-n", "3")
    assert result.returncode in (0, 3), result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(victim_core):
    assert_one_line_error(run_cli(), 2, "give one core file, --pid PID")
    assert_one_line_error(run_cli(victim_core, "--pid", "1"), 2, "not both")
    assert_one_line_error(run_cli("diff", victim_core), 2, "two inputs")
    assert_one_line_error(run_cli(victim_core, "-n", "many"), 2, "not a count")
    assert_one_line_error(run_cli(victim_core, "--bogus"), 2, "--bogus")
    assert_one_line_error(
        run_cli(victim_core, "--no-stop"), 2, "--no-stop is for --pid"
    )
