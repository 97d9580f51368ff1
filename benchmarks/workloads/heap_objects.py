"""The live heap of the memory and snapshot figures.

This module only builds objects: the correctness checks compare the
'lineno' statistics of this file's lines between snapshots, so nothing
else may allocate from here.

Each ``i`` yields six live blocks: the str; the list and its item array;
the dict and its keys; and the int ``i`` shared by the list and the dict.
"""

from __future__ import annotations

from typing import Any, List

BLOCKS_PER_ITEM = 6


def make_str(i: int) -> str:
    return "s%07d" % i


def make_list(i: int) -> List[int]:
    return [i]


def make_dict(i: int) -> Any:
    return {"k": i}


def build(n: int) -> List[List[Any]]:
    strs: List[str] = []
    lists: List[List[int]] = []
    dicts: List[Any] = []
    for i in range(n):
        strs.append(make_str(i))
        lists.append(make_list(i))
        dicts.append(make_dict(i))
    return [strs, lists, dicts]
