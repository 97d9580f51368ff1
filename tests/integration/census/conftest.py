"""Fixtures for the census tests.  One victim and one core serve the whole
session: starting a process and dumping it is the slow part, and every
test only reads them."""

from __future__ import annotations

import pytest
from census_victims import start_victim, stop_victim, take_core

#: Types whose holders the session census computes.
HELD_TYPES = [
    "census_victim.CensusUser",
    "census_victim.CensusSlotted",
    "census_victim.CensusEntry",
    "census_victim.CensusCached",
    "census_victim.CensusValue",
    "census_victim.CensusLocal",
    "dict",
    "list",
    "tuple",
    "str",
    "bytes",
    "bytearray",
]


@pytest.fixture(scope="session")
def victim(tmp_path_factory):
    """The victim, running under the Python that runs the tests."""
    victim = start_victim(str(tmp_path_factory.mktemp("victim")))
    yield victim
    stop_victim(victim)


@pytest.fixture(scope="session")
def victim_core(victim, tmp_path_factory):
    """A core of the victim, taken once."""
    return take_core(victim.pid, str(tmp_path_factory.mktemp("cores") / "victim"))


@pytest.fixture(scope="session")
def core_census(victim_core):
    """The census of the victim's core, with the holders of HELD_TYPES."""
    from pyleakhunt.census import census_core

    return census_core(victim_core, holders=0, types=HELD_TYPES)
