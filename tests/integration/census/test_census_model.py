"""The pure parts of the census: naming paths, describing holders, saving,
and diffing.  No process, no core."""

from __future__ import annotations

import json

import pytest

from pyleakhunt.census import (
    BadInputError,
    Census,
    HolderGroup,
    NotFoundError,
    TypeCount,
    diff,
)
from pyleakhunt.census.paths import describe_role, holder_steps, render_path


def step(edge, label=None, type_name="object", class_name=None, general=False):
    return (edge, label, 0x1000, type_name, class_name, general)


CLASS_ATTRIBUTE = [
    step("module", "app", "module"),
    step("module_dict", type_name="dict"),
    step("key", "Profiler", "type", class_name="app.Profiler"),
    step("class_dict", type_name="dict"),
    step("key", "results", "list"),
    step("item", None, "app.Timing", general=True),
]


def test_a_path_restarts_at_a_class_and_generalises_positions():
    assert render_path(CLASS_ATTRIBUTE) == "app.Profiler.results[*]"
    assert describe_role(CLASS_ATTRIBUTE) == "an item of a list"
    holder = holder_steps(CLASS_ATTRIBUTE)
    assert render_path(holder) == "app.Profiler.results"
    assert describe_role(holder) == "a class attribute"


def test_closure_cells_are_hidden():
    steps = [
        step("module", "app", "module"),
        step("module_dict", type_name="dict"),
        step("key", "handler", "function"),
        step("closure", "cache", "cell"),
        step("field", "cell_contents", "dict"),
    ]
    assert render_path(steps) == "app.handler.<closure cache>"
    assert describe_role(steps) == "a closure variable"


def test_locals_data_keys_and_attributes():
    local = [step("local", ("main", "rows", "app.py", 3), "list")]
    assert render_path(local) == "main.<locals>.rows"
    assert describe_role(local) == "a local variable of main() (app.py:3)"
    data = [
        step("module", "app", "module"),
        step("module_dict", type_name="dict"),
        step("key", "cache", "dict"),
        step("key", "k1", "str"),
        step("attr", "name", "str"),
    ]
    assert render_path(data) == "app.cache['k1'].name"
    assert describe_role(data) == "an instance attribute"


def group(**fields):
    base = dict(
        count=10,
        size=100,
        path="app.x[*]",
        holder="app.x",
        holder_type="list",
        role="an item of a list",
        holder_role="a module global",
    )
    base.update(fields)
    return HolderGroup(**base)


def test_holder_descriptions():
    assert group().describe() == "in a list at app.x (a module global)"
    assert (
        group(role="a module global", path="app.y").describe()
        == "a module global: app.y"
    )
    unreachable = group(reachable=False, chain=("list", "dict"), end="no_referrer")
    assert unreachable.describe().startswith("held by list <- dict, which nothing")
    cycle = group(reachable=False, chain=("dict",), end="cycle")
    assert "a reference cycle" in cycle.describe()


def census(types, holders=None, source="a"):
    return Census(
        source=source,
        source_kind="core",
        pid=1,
        process="python app.py",
        python="3.12.1",
        interpreter="/usr/lib/libpython3.12.so",
        created=0.0,
        memory_bytes=1 << 20,
        types=types,
        holders=holders or {},
    )


def test_a_census_sorts_by_size_and_round_trips_through_json(tmp_path):
    first = census(
        [
            TypeCount("str", "str", False, 0, 0, 5, 500),
            TypeCount("app.Timing", "object", True, 7, 700, 0, 0),
        ],
        {"app.Timing": [group()]},
    )
    assert [t.name for t in first.types] == ["app.Timing", "str"]
    path = str(tmp_path / "c.json")
    first.save(path)
    loaded = Census.load(path)
    assert loaded.types == first.types
    assert loaded.holders == first.holders
    assert loaded.find_type("Timing").counted_by == "gc"
    with pytest.raises(NotFoundError):
        loaded.find_type("Nothing")


def test_immortal_counts_and_the_runtime_round_trip_and_older_files_load(tmp_path):
    first = census([TypeCount("int", "int", False, 0, 0, 300, 8400, 262)])
    first.runtime = {"hexversion": 0x030E0AF0, "collector": "generational"}
    path = tmp_path / "c.json"
    first.save(str(path))
    loaded = Census.load(str(path))
    assert loaded.types[0].immortal_count == 262
    assert loaded.runtime == first.runtime
    # a census saved before these fields existed
    doc = json.loads(path.read_text())
    del doc["runtime"]
    del doc["types"][0]["immortal_count"]
    path.write_text(json.dumps(doc))
    older = Census.load(str(path))
    assert older.types[0].immortal_count == 0 and older.runtime == {}


def test_a_file_that_is_not_a_census_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"format": "something else"}')
    with pytest.raises(BadInputError):
        Census.load(str(path))


def test_diff_ranks_growth_of_types_and_holders():
    old = census(
        [TypeCount("app.Timing", "object", True, 10, 1000, 0, 0)],
        {"app.Timing": [group(count=10, size=1000)]},
    )
    new = census(
        [
            TypeCount("app.Timing", "object", True, 110, 11000, 0, 0),
            TypeCount("str", "str", False, 0, 0, 1, 50),
        ],
        {"app.Timing": [group(count=110, size=11000)]},
        source="b",
    )
    result = diff(old, new)
    assert [(g.name, g.count_diff) for g in result.types] == [
        ("app.Timing", 100),
        ("str", 1),
    ]
    assert result.holders[0].count_diff == 100
    assert result.holders[0].description == "in a list at app.x (a module global)"
