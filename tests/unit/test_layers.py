"""The package's imports run one way: down the layers of LAYERS.

Read from the source with ast (nothing is imported), every import statement
counts, including the ones inside functions: a lazy import is still a
dependency, only a later one.  A module may import from its own layer and
from the layers below it, never from a layer above.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

import pyleakhunt

PACKAGE = Path(pyleakhunt.__file__).resolve().parent

# The layer table, lowest first.  A module belongs to the layer of the
# longest name in the table that is it or its package.
#
# 0 base: plain helpers that know nothing of tracing (units and sizes, the
#   progress line, the error base class, the raw snapshot records, reading
#   /proc and ELF files).
# 1 tracer: the C core, the tracemalloc API of the package's __init__, and
#   what hands the tracer out (the leases, the free-list switch).
# 2 snapshot and file format.  userframe is here, not with the analysis
#   where issue 17 drew it: the snapshot picks each site's user frame with
#   it, and it depends on nothing of the package.
# 3 analysis: growth, the watcher, the leak check.
# 4 outputs: the text report and export/ (pprof, folded, HTML).
# 5 integrations and commands: the web layer and its old import paths,
#   production, the pytest plugin, attach, the census (a tool of its own,
#   whose report uses the outputs), the commands, the CLI and the demo.
LAYERS: Dict[str, int] = {
    "pyleakhunt.units": 0,
    "pyleakhunt.progress": 0,
    "pyleakhunt.errors": 0,
    "pyleakhunt._raw": 0,
    "pyleakhunt._files": 0,
    "pyleakhunt.process": 0,
    "pyleakhunt._core": 1,
    "pyleakhunt": 1,  # __init__: the tracemalloc API
    "pyleakhunt._freelist": 1,
    "pyleakhunt.lease": 1,
    "pyleakhunt.sampler": 1,
    "pyleakhunt.snapshot": 2,
    "pyleakhunt.fileformat": 2,
    "pyleakhunt.userframe": 2,
    "pyleakhunt.growth": 3,
    "pyleakhunt.watcher": 3,
    "pyleakhunt.leakcheck": 3,
    "pyleakhunt.report": 4,
    "pyleakhunt.export": 4,
    "pyleakhunt.web": 5,
    "pyleakhunt.wsgi": 5,
    "pyleakhunt.asgi": 5,
    "pyleakhunt.flask": 5,
    "pyleakhunt.attribution": 5,
    "pyleakhunt.production": 5,
    "pyleakhunt.pytest_plugin": 5,
    "pyleakhunt.attach": 5,
    "pyleakhunt.census": 5,
    "pyleakhunt.commands": 5,
    "pyleakhunt.cli": 5,
    "pyleakhunt.demo": 5,
    "pyleakhunt.__main__": 5,
}

# The upward imports that are meant, each with its reason.
ALLOWED: Dict[Tuple[str, str], str] = {
    # tracemalloc's API returns Snapshots: the package's __init__ re-exports
    # the Snapshot classes, and loads the file format's error on first use.
    ("pyleakhunt", "pyleakhunt.snapshot"): "the tracemalloc API's Snapshot",
    ("pyleakhunt", "pyleakhunt.fileformat"): "the tracemalloc API's Snapshot",
    # Snapshot.write_pprof and write_folded are documented conveniences;
    # they import export/ when called, so a snapshot alone never loads it.
    ("pyleakhunt.snapshot", "pyleakhunt.export"): "Snapshot.write_pprof/folded",
}

# Compiled modules: no .py file says they are modules (setup.py builds them).
EXTENSIONS = {"pyleakhunt._core", "pyleakhunt.census._scan"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    where = PACKAGE / relative
    return (
        name in EXTENSIONS
        or where.with_suffix(".py").is_file()
        or (where / "__init__.py").is_file()
    )


def imports_of(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, module) for each pyleakhunt module *path* imports."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "pyleakhunt":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "pyleakhunt":
                continue
            for alias in node.names:  # a submodule named in the import
                full = f"{source}.{alias.name}"
                yield node.lineno, full if is_module(full) else source


def layer_of(name: str) -> Optional[int]:
    while name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    return None


def package_modules() -> List[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "build" not in p.parts)


def upward_imports() -> List[str]:
    found = []
    for path in package_modules():
        importer = module_name(path)
        for line, imported in imports_of(path):
            low, high = layer_of(imported), layer_of(importer)
            if (importer, imported) in ALLOWED or importer == imported:
                continue
            if low is not None and high is not None and low > high:
                found.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {importer} "
                    f"(layer {high}) imports {imported} (layer {low})"
                )
    return found


def test_every_module_of_the_package_has_a_layer():
    missing = [
        module_name(p) for p in package_modules() if layer_of(module_name(p)) is None
    ]
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_no_module_imports_from_a_layer_above_its_own():
    found = upward_imports()
    assert not found, "upward imports:\n" + "\n".join(found)


def fake_package(tmp_path: Path, monkeypatch, files: Dict[str, str]) -> Path:
    """A package named pyleakhunt under *tmp_path*, checked in place of the
    real one."""
    root = tmp_path / "pyleakhunt"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", root)
    return root


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    # A lazy import of the CLI from the growth rule must be caught.
    files = {"cli.py": "", "growth.py": "def f():\n    from . import cli\n"}
    fake_package(tmp_path, monkeypatch, files)
    assert upward_imports() == [
        "pyleakhunt/growth.py:2: pyleakhunt.growth (layer 3) imports "
        "pyleakhunt.cli (layer 5)"
    ]


@pytest.mark.parametrize(
    "path, source, expected",
    [
        ("snapshot.py", "from . import _core", "pyleakhunt._core"),
        ("snapshot.py", "from . import start", "pyleakhunt"),
        ("snapshot.py", "import pyleakhunt.report", "pyleakhunt.report"),
        ("snapshot.py", "from .report import Report", "pyleakhunt.report"),
        ("web/page.py", "from ..report import Report", "pyleakhunt.report"),
        ("web/page.py", "from . import naming", "pyleakhunt.web.naming"),
        ("web/__init__.py", "from .naming import f", "pyleakhunt.web.naming"),
    ],
)
def test_relative_and_absolute_imports_are_resolved(
    tmp_path, monkeypatch, path, source, expected
):
    files = {"report.py": "", "web/__init__.py": "", "web/naming.py": ""}
    root = fake_package(tmp_path, monkeypatch, {**files, path: source + "\n"})
    assert [m for _, m in imports_of(root / path)] == [expected]
