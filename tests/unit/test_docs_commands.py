"""Every ``pyleakhunt`` command line written out in the README and docs/
is one the parser accepts: the docs never show an option that is gone."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import List, Tuple

import pytest

from pyleakhunt.commands import build_parser

ROOT = Path(__file__).resolve().parents[2]
#: A command in a code block, after an optional prompt or ``python -m``.
COMMAND = re.compile(r"^\s*(?:\$ )?(?:python3? -m )?pyleakhunt (\S.*)$")
#: What marks a synopsis rather than a command: [options], a|b, ..., PID.
SYNOPSIS = re.compile(r"[\[\]|]|\.\.\.|\b[A-Z]{2,}\b")
#: Where the shell takes over: the rest of the line is not pyleakhunt's.
SHELL = re.compile(r";|\s(?:&&|\|\||\||>|2>|#)\s")


def documented_commands() -> List[Tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        in_block = False
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.startswith("```"):
                in_block = not in_block
                continue
            match = COMMAND.match(line) if in_block else None
            if match is None:
                continue
            command = SHELL.split(match.group(1) + " ")[0].strip()
            if SYNOPSIS.search(command) or command.split()[0].endswith(":"):
                continue  # a usage synopsis, or the output of a command
            found.append(("%s:%d" % (path.name, number), command))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 25, COMMANDS


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_a_documented_command_line_is_accepted(where, command):
    args = build_parser().parse_args(shlex.split(command))
    assert callable(args.func)
