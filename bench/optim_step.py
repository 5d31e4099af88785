"""Benchmark (issue 5): time per training step of the rescaling-aware methods of
``pathcond.optim`` over plain SGD, on an MLP and a CNN.

A training step is ``zero_grad``, forward, cross-entropy loss, backward and the method's
update, on a fixed synthetic batch (float32):

* ``sgd``: ``torch.optim.SGD`` (the reference);
* ``enorm``: SGD with :class:`pathcond.optim.ENorm` attached (one cycle after every step,
  the paper's setting);
* ``pathsgd``: :class:`pathcond.optim.PathSGD` (magnitudes recomputed every step);
* ``gsgd``: :class:`pathcond.optim.GSGD`;
* ``weightfix``: SGD with :class:`pathcond.optim.WeightFixing` attached;
* ``gspace-sgd`` (information only): :class:`pathcond.optim.GSpace` around SGD.

Methods are interleaved inside each repeat (so load changes hit all of them alike), each
repeat times ``--steps`` consecutive steps after warm-up; the table gives the median time
per step over the repeats and its ratio to SGD's median from the same run. Targets (issue
5): ENorm, G-SGD and weight fixing at most 1.3x, Path-SGD at most 2x.

Usage::

    .venv/bin/python bench/optim_step.py                  # -> bench/results/optim_step_cpu.json
    .venv/bin/python bench/optim_step.py --quick          # smoke test
    .venv/bin/python bench/optim_step.py --device cuda    # -> bench/results/optim_step_cuda.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, command_line, loadavg, machine_info, sync  # noqa: E402

from pathcond._files import atomic_write_text  # noqa: E402
from pathcond.models import MLP  # noqa: E402
from pathcond.optim import GSGD, ENorm, GSpace, PathSGD, WeightFixing  # noqa: E402

TARGETS = {"enorm": 1.3, "gsgd": 1.3, "weightfix": 1.3, "pathsgd": 2.0}
METHODS = ("sgd", "enorm", "pathsgd", "gsgd", "weightfix", "gspace-sgd")
LR = 0.01


class SmallCNN(nn.Module):
    """CIFAR-sized CNN: three 3x3 convs (32, 64, 128 channels, the last two with stride 2),
    max-pool, a hidden Linear layer and the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(128 * 4 * 4, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.pool(F.relu(self.conv3(x)))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        out: torch.Tensor = self.fc2(x)
        return out


MODELS: dict[str, tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": ("MLP 784-512-512-512-10 (biases)",
            lambda: MLP([784, 512, 512, 512, 10]), (784,)),
    "cnn": ("CNN conv32-conv64/2-conv128/2-pool-fc256-fc10 (3x32x32)", SmallCNN, (3, 32, 32)),
}


def make_step(method: str, model: nn.Module, shape: tuple[int, ...], x: torch.Tensor,
              y: torch.Tensor) -> Callable[[], None]:
    opt: torch.optim.Optimizer
    if method in ("sgd", "enorm", "weightfix"):
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        if method == "enorm":
            ENorm(model, shape, optimizer=opt)
        elif method == "weightfix":
            WeightFixing(model, shape, optimizer=opt)
    elif method == "pathsgd":
        opt = PathSGD(model, shape, lr=LR)
    elif method == "gsgd":
        opt = GSGD(model, shape, lr=LR)
    elif method == "gspace-sgd":
        opt = GSpace(model, shape, torch.optim.SGD, lr=LR)
    else:
        raise ValueError(method)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def bench_model(name: str, device: torch.device, methods: tuple[str, ...], batch: int,
                repeats: int, steps: int, warmup: int) -> dict[str, Any]:
    label, build, shape = MODELS[name]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *shape), generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    runs: dict[str, Callable[[], None]] = {}
    setup: dict[str, float] = {}
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)  # torch's lazy imports
    for method in methods:
        torch.manual_seed(0)
        model = build().to(device)
        t0 = time.perf_counter()
        runs[method] = make_step(method, model, shape, x, y)
        setup[method] = time.perf_counter() - t0
        for _ in range(warmup):
            runs[method]()
    sync(device)
    wall: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(repeats):
        for method in methods:
            sync(device)
            t0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(steps):
                runs[method]()
            sync(device)
            wall[method].append((time.perf_counter() - t0) / steps)
            cpu[method].append((time.thread_time() - c0) / steps)
    params = sum(p.numel() for p in build().parameters())
    # with one torch thread on a CPU, the calling thread's CPU time is the step's cost even
    # when other processes share the cores; otherwise wall-clock time
    headline = cpu if device.type == "cpu" and torch.get_num_threads() == 1 else wall
    rows = {}
    for m in methods:
        rows[m] = {"wall": _summary(wall, m), "cpu": _summary(cpu, m),
                   "median_s": statistics.median(headline[m]),
                   "ratio": _summary(headline, m)["ratio"], "target": TARGETS.get(m),
                   "setup_s": setup[m]}
        target, ratio = rows[m]["target"], rows[m]["ratio"]
        rows[m]["meets_target"] = None if target is None or ratio is None else ratio <= target
    return {"label": label, "parameters": params, "input_shape": list(shape),
            "timing": "thread CPU time" if headline is cpu else "wall clock", "methods": rows}


def _summary(times: dict[str, list[float]], method: str) -> dict[str, Any]:
    med = statistics.median(times[method])
    q = statistics.quantiles(times[method], n=4) if len(times[method]) > 1 else [med] * 3
    base = statistics.median(times["sgd"]) if "sgd" in times else None
    return {"median_s": med, "q1_s": q[0], "q3_s": q[2], "min_s": min(times[method]),
            "ratio": med / base if base else None, "times_s": times[method]}


def table(results: dict[str, Any]) -> str:
    lines = []
    for name, res in results.items():
        lines.append(f"{res['label']}  ({res['parameters']:,} parameters); ratios of "
                     f"{res['timing']}")
        lines.append(f"  {'method':<11} {'cpu ms':>8} {'x SGD':>7} {'wall ms':>8} "
                     f"{'x SGD':>7} {'target':>7}       {'setup (s)':>9}")
        for m, r in res["methods"].items():
            target = "" if r["target"] is None else f"<= {r['target']:.1f}"
            mark = "" if r["meets_target"] is None else (" ok" if r["meets_target"] else " MISS")
            lines.append(f"  {m:<11} {1e3 * r['cpu']['median_s']:8.3f} "
                         f"{r['cpu']['ratio'] or 0:7.3f} {1e3 * r['wall']['median_s']:8.3f} "
                         f"{r['wall']['ratio'] or 0:7.3f} {target:>7}{mark:<5} "
                         f"{r['setup_s']:9.3f}")
        del name
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--steps", type=int, default=5, help="consecutive steps per timing")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    p.add_argument("--quick", action="store_true", help="3 repeats of 2 steps")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/...)")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.steps, args.warmup = 3, 2, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    methods = tuple(m for m in args.methods.split(",") if m)
    if "sgd" not in methods:
        methods = ("sgd", *methods)
    command = command_line()
    info = machine_info(device)
    print(f"machine: {info['cpu_model']}, {info['cpu_affinity']} CPUs usable, "
          f"{info['torch_threads']} torch threads, torch {info['torch']}, device {device}",
          flush=True)
    results = {}
    for name in [m for m in args.models.split(",") if m]:
        results[name] = bench_model(name, device, methods, args.batch, args.repeats,
                                    args.steps, args.warmup)
        print(table({name: results[name]}), flush=True)
    info["loadavg_end"] = loadavg()
    out = Path(args.out) if args.out else RESULTS / f"optim_step_{device.type}" \
        f"{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "optim_step (issue 5)", "command": command, "machine": info,
               "args": vars(args), "lr": LR, "targets": TARGETS, "results": results}
    atomic_write_text(out, json.dumps(payload, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
