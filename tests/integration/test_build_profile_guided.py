"""setup.py builds pyleakhunt._core profile-guided with GCC: instrumented,
trained by src/pgo_training.py, built again with the counts.  A training
run that no longer matches the C module would make every build fall back
to the plain one with a mere warning, so it is checked here."""

import glob
import os
import subprocess
import sys

import pytest
from helpers import ROOT

import pyleakhunt

TRAINING = os.path.join(ROOT, "src", "pgo_training.py")


def build(tmp_path, **env_extra):
    """Run setup.py build_ext into *tmp_path*; the completed process."""
    env = dict(os.environ, PYLEAKHUNT_NO_LTO="1", PYLEAKHUNT_CFLAGS="")
    for name in ("PYLEAKHUNT_NO_PGO", "PYLEAKHUNT_PGO_REQUIRED", "PYLEAKHUNT_LDFLAGS"):
        env.pop(name, None)
    env.update(env_extra)
    lib, temp = tmp_path / "lib", tmp_path / "temp"
    command = [sys.executable, "setup.py", "build_ext"]
    command += ["--build-lib", str(lib), "--build-temp", str(temp)]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def gcc() -> bool:
    cc = os.environ.get("CC", "cc").split()[0]
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True)
    except OSError:
        return False
    return "Free Software Foundation" in out.stdout


def test_the_training_run_drives_the_built_core_to_a_clean_exit():
    proc = subprocess.run(
        [sys.executable, "-I", "-S", TRAINING, pyleakhunt._core.__file__],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_a_gcc_build_is_trained_then_built_with_the_counts(tmp_path):
    if not gcc():
        pytest.skip("the profile-guided build is GCC's (-fprofile-use)")
    proc = build(tmp_path, PYLEAKHUNT_PGO_REQUIRED="1")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "-fprofile-generate" in output, output
    assert "-fprofile-use" in output, output
    assert "profile-guided build failed" not in output
    built = glob.glob(str(tmp_path / "lib" / "pyleakhunt" / "_core*.so"))
    assert len(built) == 1, built
    # The trained module traces: the training run itself against it.
    check = subprocess.run(
        [sys.executable, "-I", "-S", TRAINING, built[0]], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def test_no_pgo_builds_once_without_profiles(tmp_path):
    proc = build(tmp_path, PYLEAKHUNT_NO_PGO="1")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "-fprofile" not in output
