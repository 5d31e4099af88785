"""Markdown table of the issue 8 study (scripts/periodic.sh): per setting and optimizer,
final training loss and best validation accuracy, mean +- std over seeds.

Usage: python scripts/periodic_table.py [RESULTS_DIR]   (default results/periodic)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cell(entry: dict, key: str, scale: float = 1.0, digits: int = 4) -> str:
    value = entry.get(key) or {}
    if value.get("mean") is None:
        return "-"
    return f"{scale * value['mean']:.{digits}f} ± {scale * (value.get('std') or 0.0):.{digits}f}"


def main(root: Path) -> None:
    print("| setting | optimizer | method | final train loss | best val acc (%) | final AM/GM |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for summary in sorted(root.glob("runs/*/summary.json")):
        setting, optimizer = summary.parent.name.rsplit("-", 1)
        rows = json.loads(summary.read_text())
        best = min(rows, key=lambda r: r["final.train_loss"]["mean"])["method"]
        for r in rows:
            name = f"**{r['method']}**" if r["method"] == best else r["method"]
            print(f"| {setting} | {optimizer} | {name} | {cell(r, 'final.train_loss')} | "
                  f"{cell(r, 'best_val_acc', 100.0, 2)} | {cell(r, 'final.am_gm', 1.0, 3)} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/periodic"))
