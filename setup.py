"""Build the pyleakhunt._core extension.

The metadata lives in pyproject.toml; this file only describes the C
extension, and stops early with one clear line when uthash is missing.
"""

import os
import sys
import sysconfig

from setuptools import Extension, setup

UTHASH_HINT = (
    "pyleakhunt needs the uthash header (uthash.h): install it with "
    "'apt-get install uthash-dev' (Debian/Ubuntu), "
    "'dnf install uthash-devel' (Fedora) or 'brew install uthash' (Homebrew), "
    "or point UTHASH_INCLUDE at its directory."
)


def uthash_include_dirs():
    """Directories to search for uthash.h, the first hit wins."""
    candidates = [os.environ.get("UTHASH_INCLUDE", "")]
    candidates += ["/usr/include", "/usr/local/include", "/opt/homebrew/include"]
    candidates.append(sysconfig.get_config_var("INCLUDEDIR") or "")
    for directory in candidates:
        if directory and os.path.exists(os.path.join(directory, "uthash.h")):
            return [directory]
    return None


def optimisation_args():
    """-O3 and link-time optimisation: the allocator hooks call across the
    C files on every allocation, and letting the compiler inline those
    calls cuts the tracer's overhead by about a fifth (docs/design.md).
    PYLEAKHUNT_NO_LTO=1 turns LTO off, for toolchains that lack it."""
    args = ["-O3", "-fvisibility=hidden"]
    if not os.environ.get("PYLEAKHUNT_NO_LTO"):
        args.append("-flto")
    return args


def extra_compile_args():
    args = ["-std=c11", "-Wall", "-Wextra"] + optimisation_args()
    # CI builds with PYLEAKHUNT_CFLAGS="-Werror", or with sanitizers.
    args += os.environ.get("PYLEAKHUNT_CFLAGS", "").split()
    return args


def extra_link_args():
    args = optimisation_args()
    args += os.environ.get("PYLEAKHUNT_LDFLAGS", "").split()
    return args


def build_args():
    """Only the commands that compile need uthash."""
    return any(
        arg.startswith(("build", "bdist", "develop", "install", "editable"))
        for arg in sys.argv[1:]
    )


include_dirs = uthash_include_dirs()
if include_dirs is None and build_args():
    sys.exit("error: " + UTHASH_HINT)

core = Extension(
    "pyleakhunt._core",
    sources=[
        "src/frames.c",
        "src/tables.c",
        "src/sampling.c",
        "src/hooks.c",
        "src/module.c",
    ],
    depends=[
        "src/frames.h",
        "src/tables.h",
        "src/hooks.h",
        "src/sampling.h",
        "src/state.h",
        "src/uthash_config.h",
        "src/pyleakhunt.h",
    ],
    include_dirs=["src"] + (include_dirs or []),
    extra_compile_args=extra_compile_args(),
    extra_link_args=extra_link_args(),
    libraries=["m"],
)

setup(ext_modules=[core])
