"""Comparing two censuses: which types grew, and which holders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from .model import Census, HolderGroup, TypeCount


@dataclass(frozen=True)
class TypeGrowth:
    """One type in two censuses."""

    name: str
    old_count: int
    new_count: int
    old_size: int
    new_size: int

    @property
    def count_diff(self) -> int:
        return self.new_count - self.old_count

    @property
    def size_diff(self) -> int:
        return self.new_size - self.old_size


@dataclass(frozen=True)
class HolderGrowth:
    """Objects of one type held the same way, in two censuses."""

    type_name: str
    description: str  # HolderGroup.describe() of the newer group
    path: str
    old_count: int
    new_count: int
    old_size: int
    new_size: int

    @property
    def count_diff(self) -> int:
        return self.new_count - self.old_count

    @property
    def size_diff(self) -> int:
        return self.new_size - self.old_size


@dataclass
class CensusDiff:
    """What changed between census *old* and census *new*."""

    old: Census
    new: Census
    types: List[TypeGrowth]  # every type that changed, biggest growth first
    holders: List[HolderGrowth]  # holders that changed, biggest growth first


def _holder_key(group: HolderGroup) -> Tuple[str, ...]:
    """Groups match across censuses by path (or, unreachable, by chain)."""
    if group.reachable:
        return ("path", group.path)
    return ("chain", group.end, *group.chain)


def _type_growth(old: Census, new: Census) -> List[TypeGrowth]:
    before: Dict[str, TypeCount] = {t.name: t for t in old.types}
    after: Dict[str, TypeCount] = {t.name: t for t in new.types}
    growth = []
    for name in before.keys() | after.keys():
        a, b = before.get(name), after.get(name)
        row = TypeGrowth(
            name,
            a.count if a else 0,
            b.count if b else 0,
            a.size if a else 0,
            b.size if b else 0,
        )
        if row.count_diff or row.size_diff:
            growth.append(row)
    growth.sort(key=lambda g: (-g.size_diff, -g.count_diff, g.name))
    return growth


def _holder_growth(old: Census, new: Census) -> List[HolderGrowth]:
    growth = []
    for name in old.holders.keys() & new.holders.keys():
        before = {_holder_key(g): g for g in old.holders[name]}
        after = {_holder_key(g): g for g in new.holders[name]}
        for key in before.keys() | after.keys():
            a, b = before.get(key), after.get(key)
            shown = b or a
            assert shown is not None
            row = HolderGrowth(
                name,
                shown.describe(),
                shown.path,
                a.count if a else 0,
                b.count if b else 0,
                a.size if a else 0,
                b.size if b else 0,
            )
            if row.count_diff or row.size_diff:
                growth.append(row)
    growth.sort(key=lambda g: (-g.size_diff, -g.count_diff, g.type_name, g.path))
    return growth


def diff(old: Census, new: Census) -> CensusDiff:
    """The types and holders that changed from *old* to *new*.

    Holders are compared only for types whose holders both censuses hold
    (a census keeps those of its biggest types, and of ``--type``).
    """
    return CensusDiff(old, new, _type_growth(old, new), _holder_growth(old, new))
