"""What the figures were measured on."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

REPO = Path(__file__).resolve().parent.parent


def _cpuinfo() -> Dict[str, Any]:
    model = None
    cores = set()
    physical = core = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and model is None:
                    model = value
                elif key == "physical id":
                    physical = value
                elif key == "core id":
                    core = value
                elif not key and physical is not None and core is not None:
                    cores.add((physical, core))
                    physical = core = None
    except OSError:
        pass
    if physical is not None and core is not None:
        cores.add((physical, core))
    return {
        "cpu_model": model or platform.processor() or "unknown",
        "physical_cores": len(cores) or None,
    }


def _ram_bytes() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _pyleakhunt_version() -> str:
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--", "src", "pyleakhunt", "setup.py")
    version = "?"
    try:
        text = (REPO / "pyleakhunt" / "__init__.py").read_text()
        for line in text.splitlines():
            if line.startswith("__version__"):
                version = line.split("=", 1)[1].strip().strip("\"'")
                break
    except OSError:
        pass
    if commit:
        version += " (git %s%s)" % (
            commit,
            ", with uncommitted changes" if dirty else "",
        )
    return version


def describe() -> Dict[str, Any]:
    info: Dict[str, Any] = _cpuinfo()
    info.update(
        {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M"
            ),
            "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "ram_bytes": _ram_bytes(),
            "platform": platform.platform(),
            "python": "%s %s (%s)"
            % (
                platform.python_implementation(),
                platform.python_version(),
                sys.executable,
            ),
            "pyleakhunt": _pyleakhunt_version(),
        }
    )
    if hasattr(os, "getloadavg"):
        info["load_average"] = " ".join("%.2f" % x for x in os.getloadavg())
    return info
