"""Shared by the bench scripts: the machine description and the command line recorded in
every JSON result, with paths made relative to the repository (no machine paths), where
the results go, and the device synchronisation around timings."""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
#: Where the bench scripts write their JSON results.
RESULTS = ROOT / "bench" / "results"
_ABSOLUTE = re.compile(r"(?<![\w.])/(?:[^\s/:()'\"]+/)+([^\s/:()'\"]+)")


def relative_paths(text: str) -> str:
    """``text`` with the repository root removed from paths, site-packages paths shortened
    to ``site-packages/...`` and any other absolute path reduced to its file name."""
    text = text.replace(f"{ROOT}/", "")
    text = re.sub(r"(?<![\w.])/\S*?/site-packages/", "site-packages/", text)
    return _ABSOLUTE.sub(r"\1", text)


def command_line() -> str:
    """The command that ran this script, as one could type it from the repository root."""
    return relative_paths(" ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (``None`` where the platform has none)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def machine_info(device: torch.device) -> dict[str, Any]:
    """Platform, versions, threads, load and git state, recorded next to every timing."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT,
                                  check=False).stdout.strip()
        except OSError:
            return ""

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "cuda_available": torch.cuda.is_available(),
        "git_commit": git("rev-parse", "HEAD"),
        "pathcond_uncommitted_changes": git("status", "--porcelain", "--", "pathcond")
        .splitlines(),
        "loadavg_start": loadavg(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except OSError:
        info["cpu_model"] = None
    if device.type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(device)
        info["cuda_version"] = torch.version.cuda
    return info
