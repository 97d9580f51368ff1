"""Fixtures for the integration tests."""

from __future__ import annotations

import os
import subprocess
import sysconfig

import pytest
from helpers import CAPI_PROBE, ROOT


@pytest.fixture(scope="module")
def capi_probe_dir(tmp_path_factory):
    """A tiny C extension built against src/pyleakhunt.h, warnings as errors."""
    directory = tmp_path_factory.mktemp("capi_probe")
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    source = directory / "lhcapi_probe.c"
    source.write_text(CAPI_PROBE)
    command = [
        *compiler,
        "-shared",
        "-fPIC",
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-I",
        os.path.join(ROOT, "src"),
        "-I",
        sysconfig.get_paths()["include"],
        str(source),
        "-o",
        str(directory / ("lhcapi_probe" + suffix)),
    ]
    try:
        build = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        pytest.skip("no C compiler")
    assert build.returncode == 0, build.stderr
    return str(directory)
