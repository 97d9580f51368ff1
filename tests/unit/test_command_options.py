"""The subcommands share one validator per kind of value (frames, sizes,
seconds, process ids): the same rule and the same words everywhere."""

from __future__ import annotations

import pytest

from pyleakhunt.commands import UsageError, build_parser


def usage_error(*argv: str) -> str:
    with pytest.raises(UsageError) as raised:
        build_parser().parse_args(list(argv))
    return str(raised.value)


@pytest.mark.parametrize("command", [["run", "x.py"], ["attach", "1"]])
def test_frames_are_checked_alike_by_run_and_attach(command):
    message = usage_error(*command[:1], "--nframe", "0", *command[1:])
    assert "the number of frames must be between 1 and 65535, not 0" in message


@pytest.mark.parametrize("command", [["run", "x.py"], ["attach", "1"]])
def test_sizes_are_checked_alike_by_run_and_attach(command):
    message = usage_error(*command[:1], "--sample", "lots", *command[1:])
    assert "SIZE must be a size such as 512KiB" in message


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
@pytest.mark.parametrize(
    "option",
    [["run", "--interval"], ["attach", "1", "--watch"], ["attach", "1", "--timeout"]],
)
def test_seconds_must_be_positive(option, value):
    argv = [*option, value] + (["x.py"] if option[0] == "run" else [])
    assert "must be a positive number of seconds, not %s" % value in usage_error(*argv)


def test_attach_may_wait_without_end_but_run_samples_at_a_finite_interval():
    args = build_parser().parse_args(
        ["attach", "1", "--watch", "1", "--duration", "inf"]
    )
    assert args.duration == float("inf")
    assert "not inf" in usage_error("run", "--interval", "inf", "x.py")


@pytest.mark.parametrize("command", [["attach"], ["census", "--pid"]])
@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_process_ids_are_checked_alike_by_attach_and_census(command, value):
    assert "not a process id: %r" % value in usage_error(*command, value)
