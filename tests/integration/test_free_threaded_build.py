"""setup.py under a free-threaded CPython: it builds, and the module it
builds refuses to import with one clear line."""

import sys

import pytest
from helpers import ROOT

FREE_THREADED_BUILD = """
import sys, sysconfig
real = sysconfig.get_config_var
sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
lib, temp = sys.argv[1:3]
sys.argv = ["setup.py", "build_ext", "--build-lib", lib, "--build-temp", temp]
exec(
    compile(open("setup.py").read(), "setup.py", "exec"),
    {"__name__": "__main__", "__file__": "setup.py"},
)
"""


def test_a_free_threaded_build_makes_a_core_that_refuses_to_import(tmp_path):
    # setup.py as it runs under a free-threaded CPython (Py_GIL_DISABLED):
    # it must build, and the module it builds must refuse with one line.
    import glob
    import importlib.machinery
    import importlib.util
    import os
    import subprocess

    lib, temp = tmp_path / "lib", tmp_path / "temp"
    env = dict(os.environ, PYLEAKHUNT_NO_LTO="1")
    proc = subprocess.run(
        [sys.executable, "-c", FREE_THREADED_BUILD, str(lib), str(temp)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    built = glob.glob(str(lib / "pyleakhunt" / "*.so"))
    assert [os.path.basename(p).split(".")[0] for p in built] == ["_core"]
    loader = importlib.machinery.ExtensionFileLoader("pyleakhunt._core", built[0])
    spec = importlib.util.spec_from_file_location(
        "pyleakhunt._core", built[0], loader=loader
    )
    with pytest.raises(ImportError) as error:
        importlib.util.module_from_spec(spec)
    message = str(error.value)
    assert "free-threaded builds are not supported yet" in message
    assert "\n" not in message
