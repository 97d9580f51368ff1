"""Build the pyleakhunt._core extension.

The metadata lives in pyproject.toml; this file only describes the C
extension, and stops early with one clear line when uthash is missing.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

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
    # GCC's straight-line vectorizer packs a site's count and size into
    # one SSE register on every allocation and free, for more instructions
    # than two scalar updates: off, W1 runs 770 fewer an iteration (3.14,
    # docs/design.md "Speed").  Loops are still vectorized.
    args.append("-fno-tree-slp-vectorize")
    if sys.platform.startswith("linux"):
        # Calls into libpython through the GOT, without a PLT stub: the
        # hooks call PyThreadState_GetUnchecked() on nearly every event.
        args.append("-fno-plt")
    if not os.environ.get("PYLEAKHUNT_NO_LTO"):
        args.append("-flto=auto")
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


# A free-threaded CPython (PEP 703, Py_GIL_DISABLED) gets a _core that
# refuses to import with one clear line (src/freethreaded.c): the tracer
# needs the GIL, and its real sources would not compile there.
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

include_dirs = uthash_include_dirs()
if include_dirs is None and build_args() and not FREE_THREADED:
    sys.exit("error: " + UTHASH_HINT)

core = Extension(
    "pyleakhunt._core",
    sources=[
        "src/frames.c",
        "src/userframe.c",
        "src/tables.c",
        "src/lock.c",
        "src/sampling.c",
        "src/hooks.c",
        "src/allocswap.c",
        "src/extension_track.c",
        "src/freelists.c",
        "src/gil_handoff.c",
        "src/module.c",
    ],
    depends=[
        "src/compiler.h",
        "src/frames.h",
        "src/userframe.h",
        "src/tables.h",
        "src/hooks.h",
        "src/allocswap.h",
        "src/extension_track.h",
        "src/freelists.h",
        "src/gil_handoff.h",
        "src/lock.h",
        "src/sampling.h",
        "src/state.h",
        "src/uthash_config.h",
        "src/pyleakhunt.h",
    ],
    include_dirs=["src"] + (include_dirs or []),
    extra_compile_args=extra_compile_args(),
    extra_link_args=extra_link_args(),
    # dlopen is in libdl, and the pthread functions in libpthread, before
    # glibc 2.34 (extension_track.c, gil_handoff.c).
    libraries=["m"] + (["dl", "pthread"] if sys.platform.startswith("linux") else []),
)


# The autostart hook (docs/production.md): a .pth file at the top of
# site-packages, whose one line Python runs at startup.  A wheel gets it
# from build_py, which copies it beside the package.  An editable wheel
# (PEP 660, pip install -e) leaves build_py's output out, so the editable
# strategy (what writes the wheel's own .pth) adds it too.  Both list it in
# the wheel's RECORD, so pip uninstall removes it.
AUTOSTART_PTH = "pyleakhunt-autostart.pth"
HERE = os.path.dirname(os.path.abspath(__file__))


class build_py_with_autostart(build_py):
    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            self.copy_file(
                os.path.join(HERE, AUTOSTART_PTH),
                os.path.join(self.build_lib, AUTOSTART_PTH),
                preserve_mode=0,
            )


def profile_guided_wanted(compiler):
    """Whether to build pyleakhunt._core profile-guided: with GCC on Linux,
    not for a sanitizer build (CI's), a free-threaded one (a stub), a
    cross build, or with PYLEAKHUNT_NO_PGO=1.  (CI sets
    PYLEAKHUNT_PGO_REQUIRED=1, so that a failure of the profile-guided
    build fails the build instead of falling back.)"""
    flags = os.environ.get("PYLEAKHUNT_CFLAGS", "")
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("PYLEAKHUNT_NO_PGO")
        or os.environ.get("_PYTHON_HOST_PLATFORM")
        or "-fsanitize" in flags
        or FREE_THREADED
    ):
        return False
    try:
        version = subprocess.run(
            [compiler.compiler_so[0], "--version"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (AttributeError, IndexError, OSError, subprocess.SubprocessError):
        return False
    return "Free Software Foundation" in version  # GCC, not clang


class build_ext_profile_guided(build_ext):
    """Build pyleakhunt._core twice: instrumented, then, after
    src/pgo_training.py has run it, with the counts that run left.  The
    compiler then lays out the allocator hooks' common paths straight:
    some 6% less time on W1 (docs/design.md, "Speed").  Any failure falls
    back to the plain build: an optimisation never fails an install."""

    def build_extension(self, ext):
        if ext.name != "pyleakhunt._core" or not profile_guided_wanted(self.compiler):
            super().build_extension(ext)
            return
        compile_args, link_args = ext.extra_compile_args, ext.extra_link_args
        force = self.force, self.compiler.force
        self.force = self.compiler.force = True  # both stages rebuild all
        profile_dir = tempfile.mkdtemp(prefix="pyleakhunt-pgo-")
        try:
            self._build_profile_guided(ext, profile_dir)
        except Exception as exc:  # compiler, training or timeout: any
            if os.environ.get("PYLEAKHUNT_PGO_REQUIRED"):
                raise
            print(
                f"pyleakhunt: profile-guided build failed ({exc}); building without it",
                file=sys.stderr,
            )
            ext.extra_compile_args, ext.extra_link_args = compile_args, link_args
            super().build_extension(ext)
        finally:
            ext.extra_compile_args, ext.extra_link_args = compile_args, link_args
            self.force, self.compiler.force = force
            shutil.rmtree(profile_dir, ignore_errors=True)

    def _build_profile_guided(self, ext, profile_dir):
        compile_args, link_args = ext.extra_compile_args, ext.extra_link_args
        generate = ["-fprofile-generate", "-fprofile-update=prefer-atomic"]
        where = [f"-fprofile-dir={profile_dir}"]
        ext.extra_compile_args = compile_args + generate + where
        ext.extra_link_args = link_args + generate
        super().build_extension(ext)
        training = os.path.join(HERE, "src", "pgo_training.py")
        # Isolated (-I) and without site (-S): no environment variable,
        # .pth file or installed pyleakhunt (its autostart hook) takes part.
        subprocess.run(
            [sys.executable, "-I", "-S", training, self.get_ext_fullpath(ext.name)],
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
        use = ["-fprofile-use", "-fprofile-partial-training"]
        ext.extra_compile_args = compile_args + use + where + ["-Wno-missing-profile"]
        ext.extra_link_args = link_args + use
        super().build_extension(ext)


cmdclass = {"build_py": build_py_with_autostart, "build_ext": build_ext_profile_guided}

try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # setuptools < 64 has no PEP 660 editable wheels
    editable_wheel = None

if editable_wheel is not None:

    class _WithAutostart:
        """An editable strategy that also writes the autostart .pth."""

        def __init__(self, strategy):
            self.strategy = strategy

        def __enter__(self):
            self.strategy.__enter__()
            return self

        def __exit__(self, *exc_info):
            return self.strategy.__exit__(*exc_info)

        def __call__(self, wheel, files, mapping):
            self.strategy(wheel, files, mapping)
            with open(os.path.join(HERE, AUTOSTART_PTH), "rb") as f:
                wheel.writestr(AUTOSTART_PTH, f.read())

    class editable_wheel_with_autostart(editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            return _WithAutostart(super()._select_strategy(*args, **kwargs))

    cmdclass["editable_wheel"] = editable_wheel_with_autostart

# The census scanner (docs/census.md): a separate small extension that
# reads memory images of other processes; it needs no uthash.
census_scan = Extension(
    "pyleakhunt.census._scan",
    sources=[
        "src/census/image.c",
        "src/census/layout.c",
        "src/census/debugoffsets.c",
        "src/census/maps.c",
        "src/census/types.c",
        "src/census/objects.c",
        "src/census/census.c",
        "src/census/graph.c",
        "src/census/pause.c",
        "src/census/readmem.c",
        "src/census/topython.c",
        "src/census/module.c",
    ],
    depends=[
        "src/census/image.h",
        "src/census/layout.h",
        "src/census/debugoffsets.h",
        "src/census/maps.h",
        "src/census/scanner.h",
        "src/census/types.h",
        "src/census/objects.h",
        "src/census/census.h",
        "src/census/graph.h",
        "src/census/pause.h",
        "src/census/readmem.h",
        "src/census/topython.h",
    ],
    include_dirs=["src/census"],
    extra_compile_args=extra_compile_args(),
    extra_link_args=extra_link_args(),
)

ext_modules = [core, census_scan]
if FREE_THREADED:
    ext_modules = [
        Extension(
            "pyleakhunt._core",
            sources=["src/freethreaded.c"],
            extra_compile_args=extra_compile_args(),
            extra_link_args=extra_link_args(),
        )
    ]

setup(ext_modules=ext_modules, cmdclass=cmdclass)
