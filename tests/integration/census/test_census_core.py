"""The census of a core file: counts, sizes, holders, the command, diffs.

Every test reads the same core of one victim (conftest.py), taken with
gcore; the victim's objects are known, so counts are asserted exactly.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest
from census_victims import run_cli, start_victim, stop_victim, take_core

from pyleakhunt.census import Census, census_core, open_core
from pyleakhunt.census.report import header_lines

V = "census_victim"


def holder(census: Census, type_name: str, path: str):
    """The holder group of *type_name* whose path is *path*."""
    for group in census.holders[type_name]:
        if group.path == path:
            return group
    paths = [g.path for g in census.holders[type_name]]
    raise AssertionError(f"no holder {path!r} of {type_name}: {paths}")


# --------------------------------------------------------------------------
# The type table


@pytest.mark.parametrize(
    "name, count",
    [
        ("CensusUser", 12345),
        ("CensusSlotted", 3456),
        ("CensusEntry", 2345),
        ("CensusCached", 1234),
        ("CensusValue", 1500),
        ("CensusLocal", 800),
    ],
)
def test_user_classes_are_counted_exactly_by_their_module_qualified_name(
    core_census, name, count
):
    t = core_census.find_type(f"{V}.{name}")
    assert t.count == count
    assert t.counted_by == "gc"
    assert t.is_class and t.kind == "object"


def test_find_type_accepts_the_last_part_of_a_name(core_census):
    assert core_census.find_type("CensusUser").name == f"{V}.CensusUser"


def test_the_table_is_sorted_by_bytes(core_census):
    sizes = [t.size for t in core_census.types]
    assert sizes == sorted(sizes, reverse=True)


def test_scalars_are_found_by_the_scan(core_census):
    for name in ("str", "bytes", "int", "float"):
        t = core_census.find_type(name)
        assert t.counted_by == "scan", name
        assert t.count > 0


def test_the_census_names_the_python_version(core_census, victim):
    assert core_census.python == victim.expected["version"]
    assert core_census.pid == victim.pid
    assert core_census.stats["interpreters"] == 1
    assert core_census.stats["broken_lists"] == 0


@pytest.mark.parametrize(
    "type_name, path, count",
    [
        ("str", f"{V}.strings[*]", 6000),
        ("bytes", f"{V}.blobs[*]", 700),
        ("list", f"{V}.lists[*]", 3000),
        ("tuple", f"{V}.tuples[*]", 5000),
        ("dict", f"{V}.dicts[*]", 4000),
        ("bytearray", f"{V}.arrays[*]", 300),
        ("str", f"{V}.users[*].name", 12345),
    ],
)
def test_builtin_objects_are_counted_exactly_where_they_are_held(
    core_census, type_name, path, count
):
    assert holder(core_census, type_name, path).count == count


@pytest.mark.parametrize(
    "type_name, path, key",
    [
        ("str", f"{V}.strings[*]", "strings_size"),
        ("bytes", f"{V}.blobs[*]", "blobs_size"),
        ("list", f"{V}.lists[*]", "lists_size"),
        ("tuple", f"{V}.tuples[*]", "tuples_size"),
        ("dict", f"{V}.dicts[*]", "dicts_size"),
        ("bytearray", f"{V}.arrays[*]", "arrays_size"),
    ],
)
def test_sizes_include_variable_parts_as_getsizeof_counts_them(
    core_census, victim, type_name, path, key
):
    assert holder(core_census, type_name, path).size == victim.expected[key]


# --------------------------------------------------------------------------
# Held by


def test_a_chain_through_a_class_attribute(core_census):
    group = core_census.holders[f"{V}.CensusEntry"][0]
    assert group.count == 2345
    assert group.path == f"{V}.Registry.entries[*]"
    assert group.holder == f"{V}.Registry.entries"
    assert group.holder_type == "list"
    assert group.holder_role == "a class attribute"
    assert group.describe() == (
        f"in a list at {V}.Registry.entries (a class attribute)"
    )


def test_a_chain_through_a_module_global(core_census):
    group = core_census.holders[f"{V}.CensusValue"][0]
    assert (group.count, group.holder, group.holder_type) == (
        1500,
        f"{V}.GLOBAL_MAP",
        "dict",
    )
    assert group.holder_role == "a module global"
    users = core_census.holders[f"{V}.CensusUser"][0]
    assert users.describe() == f"in a list at {V}.users (a module global)"


def test_a_chain_through_a_closure(core_census):
    group = core_census.holders[f"{V}.CensusCached"][0]
    assert group.count == 1234
    assert group.holder == f"{V}.getter.<closure cache>"
    assert group.holder_role == "a closure variable"


def test_a_chain_through_a_thread_local(core_census):
    group = core_census.holders[f"{V}.CensusLocal"][0]
    assert group.count == 800
    assert group.holder == "worker.<locals>.rows"
    assert group.holder_role.startswith("a local variable of worker()")


def test_slotted_instances_name_their_slots(core_census):
    group = core_census.holders[f"{V}.CensusSlotted"][0]
    assert group.path == f"{V}.slotted_by_id[*]"
    assert group.count == 3456


def test_held_by_one_address_gives_its_path_and_referrers(victim_core, core_census):
    example = core_census.holders[f"{V}.CensusEntry"][0].example
    with open_core(victim_core) as session:
        session.census()
        report = session.held_by(example)
    assert report.type_name == f"{V}.CensusEntry"
    assert report.path is not None
    assert report.path.startswith(f"{V}.Registry.entries[")
    assert report.role == "an item of a list"
    assert [t for _, t, _ in report.referrers] == ["list"]
    assert report.referrers[0][2] == f"{V}.Registry.entries"


# --------------------------------------------------------------------------
# The command


def test_the_command_prints_the_table_and_the_holders(victim_core):
    result = run_cli(victim_core, "--type", "CensusEntry", "-n", "5")
    assert result.returncode == 0, result.stderr
    assert result.lines[0].startswith("Census of ")
    assert any("Type" in line and "Counted" in line for line in result.lines)
    text = result.stdout
    assert f"in a list at {V}.Registry.entries (a class attribute)" in text
    assert "100.0%" in text


def test_json_output_is_the_saved_census(victim_core, tmp_path):
    saved = str(tmp_path / "census.json")
    result = run_cli(victim_core, "--json", "-o", saved, "--type", "CensusUser")
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert doc["format"] == "pyleakhunt-census"
    users = [t for t in doc["types"] if t["name"] == f"{V}.CensusUser"]
    assert users[0]["count"] == 12345 and users[0]["counted_by"] == "gc"
    loaded = Census.load(saved)
    assert loaded.find_type("CensusUser").count == 12345
    assert loaded.holders[f"{V}.CensusUser"][0].holder == f"{V}.users"
    shown = run_cli(saved, "-n", "3")
    assert shown.returncode == 0 and shown.lines[0].startswith("Census of ")


def test_held_by_address_from_the_command(victim_core, core_census):
    example = core_census.holders[f"{V}.CensusValue"][0].example
    result = run_cli(victim_core, "--held-by", hex(example))
    assert result.returncode == 0, result.stderr
    assert f"{V}.CensusValue" in result.lines[0]
    assert f"reachable as {V}.GLOBAL_MAP[" in result.stdout


def test_unknown_type_and_address_exit_9(victim_core):
    result = run_cli(victim_core, "--type", "NoSuchType", "--no-holders")
    assert result.returncode == 9
    assert result.stderr.strip() == (
        "pyleakhunt: error: no object of type 'NoSuchType' in the census"
    )
    result = run_cli(victim_core, "--held-by", "0x10")
    assert result.returncode == 9
    assert "no object at 0x10" in result.stderr


def test_diff_of_two_cores_ranks_what_grew(tmp_path):
    victim = start_victim(str(tmp_path))
    try:
        before = take_core(victim.pid, str(tmp_path / "before"))
        victim.command("grow 3000")
        after = take_core(victim.pid, str(tmp_path / "after"))
    finally:
        stop_victim(victim)
    result = run_cli("diff", before, after, "--json")
    assert result.returncode == 0, result.stderr
    doc = result.json()
    grew = {t["type"]: t for t in doc["types"]}
    assert grew[f"{V}.CensusEntry"]["count_diff"] == 3000
    top = doc["holders"][0]
    assert top["type"] == f"{V}.CensusEntry"
    assert top["count_diff"] == 3000
    assert top["held"] == f"in a list at {V}.Registry.entries (a class attribute)"
    # Saved censuses diff the same way.
    old, new = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    assert run_cli(before, "-o", old, "--no-holders").returncode == 0
    assert run_cli(after, "-o", new, "--no-holders").returncode == 0
    text = run_cli("diff", old, new)
    assert text.returncode == 0, text.stderr
    assert any(f"{V}.CensusEntry" in line and "+3,000" in line for line in text.lines)


# --------------------------------------------------------------------------
# Other interpreters: Debian's, stripped and linked statically


def _system_pythons():
    found = []
    for name in (
        "python3",
        "python3.11",
        "python3.12",
        "python3.13",
        "python3.14",
        "python3.15",
    ):
        path = os.path.join("/usr/bin", name)
        if os.path.exists(path) and os.path.realpath(path) not in found:
            found.append(os.path.realpath(path))
    return found


@pytest.mark.parametrize("python", _system_pythons() or [None])
def test_a_system_python_without_debug_symbols(python, tmp_path):
    if python is None:
        pytest.skip("no Python under /usr/bin")
    if shutil.which("gcore") is None:
        pytest.skip("gcore (from gdb) is not installed")
    victim = start_victim(str(tmp_path), python)
    try:
        core = take_core(victim.pid, str(tmp_path / "core"))
    finally:
        stop_victim(victim)
    census = census_core(core, holders=0, types=[f"{V}.CensusEntry"])
    assert census.python == victim.expected["version"]
    assert census.find_type("CensusUser").count == 12345
    group = census.holders[f"{V}.CensusEntry"][0]
    assert group.holder == f"{V}.Registry.entries"


def test_python_option_reads_the_interpreter_from_another_path(victim_core, tmp_path):
    """For a core from another machine or a container, --python names a
    copy of the interpreter to read instead of the path the core records."""
    with open_core(victim_core) as session:
        interpreter = session.image.interpreter.path
    copy = str(tmp_path / os.path.basename(interpreter))
    shutil.copy(interpreter, copy)
    result = run_cli(victim_core, "--python", copy, "--no-holders", "-n", "3")
    assert result.returncode == 0, result.stderr
    assert sys.version.split()[0] in result.lines[0]


# --------------------------------------------------------------------------
# Immortal objects (PEP 683, 3.12+)


@pytest.mark.skipif(
    sys.version_info < (3, 12),
    reason="immortal objects exist from CPython 3.12 (PEP 683); before, none is",
)
def test_immortal_objects_are_counted_by_their_reference_count(core_census):
    """None, True, False and the small ints are immortal: their 32-bit
    reference count reads negative.  The victim's own objects are not."""
    for name, count in (("NoneType", 1), ("bool", 2)):
        assert core_census.find_type(name).immortal_count == count, name
    assert core_census.find_type("int").immortal_count >= 262  # -5 to 256
    assert core_census.find_type(f"{V}.CensusUser").immortal_count == 0
    assert core_census.stats["immortal"] == sum(
        t.immortal_count for t in core_census.types
    )
    immortal = core_census.stats["immortal"]
    assert f"; {immortal:,} immortal" in header_lines(core_census)[1]


@pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="from CPython 3.12, some objects are immortal (tested above)",
)
def test_no_object_is_immortal_before_3_12(core_census):
    assert core_census.stats["immortal"] == 0
