"""Paper Table 1 (Appendix I): parameters, hidden units and number of paths of standard
architectures, as computed by pathcond."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .._files import atomic_write_text
from ..errors import ConfigError
from ..graph import rescaling_graph
from ..lifting import num_paths
from ..models import get_model, is_user_model, model_input_shape

TABLE1_MODELS = ("resnet18", "resnet34", "resnet50", "alexnet", "vgg16", "cifar_nv")

#: Parameters and hidden units as printed in the paper's Table 1 (SPEC section 6).
PUBLISHED = {
    "resnet18": (11_689_512, 4_800), "resnet34": (21_797_672, 8_512),
    "resnet50": (25_557_032, 26_560), "alexnet": (61_100_840, 9_344),
    "vgg16": (138_357_544, 12_416), "cifar_nv": (2_616_576, 1_792),
}


@dataclass(frozen=True)
class Table1Row:
    """One architecture: counts from the model and the graph, paths as a base-10 log."""

    model: str
    parameters: int
    hidden_units: int
    rescaling_groups: int
    log10_paths: float

    def paths_text(self) -> str:
        exponent = math.floor(self.log10_paths)
        return f"{10 ** (self.log10_paths - exponent):.4f}e{exponent}"


def table1_row(name: str) -> Table1Row:
    """Count one model of the zoo (paths by one forward pass of the magnitude network)."""
    torch.manual_seed(0)
    model = get_model(name)
    graph = rescaling_graph(model, model_input_shape(name))
    return Table1Row(name, sum(p.numel() for p in model.parameters()), graph.num_hidden_units,
                     graph.num_groups, num_paths(model, graph=graph, log=True) / math.log(10))


def table1_markdown(rows: list[Table1Row]) -> str:
    """The table as Markdown, with the published counts beside ours."""
    lines = ["| model | parameters | hidden units | rescaling groups | paths | matches paper |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        ok = PUBLISHED.get(r.model) == (r.parameters, r.hidden_units)
        lines.append(f"| {r.model} | {r.parameters:,} | {r.hidden_units:,} | "
                     f"{r.rescaling_groups:,} | {r.paths_text()} | {'yes' if ok else 'NO'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table1_markdown([table1_row(n) for n in TABLE1_MODELS]))


# ----------------------------------------------------------------- experiment registry


def run_table1(ctx: Any) -> dict[str, Any]:
    """Registry runner: one unit per model of ``ctx.params["models"]``."""
    yours = [n for n in ctx.params["models"] if isinstance(n, str) and is_user_model(n)]
    if yours:
        raise ConfigError(f"table1 counts architectures of the zoo (`pathcond models`); count "
                          f"a model of yours with `pathcond stats {yours[0]} --input-shape "
                          "C,H,W`")
    rows: list[dict[str, Any]] = []
    for name in ctx.params["models"]:
        def compute(name: str = name) -> dict[str, Any]:
            r = table1_row(name)
            return {"model": r.model, "parameters": r.parameters,
                    "hidden_units": r.hidden_units, "rescaling_groups": r.rescaling_groups,
                    "log10_paths": r.log10_paths}
        rec = ctx.store.run(f"model={name}", {"model": name, "digits": 10}, compute)
        published = PUBLISHED.get(name)
        rows.append({**rec, "published_parameters": published[0] if published else None,
                     "published_hidden_units": published[1] if published else None,
                     "matches": published == (rec["parameters"], rec["hidden_units"])})
        ctx.log(f"{name}: {rec['parameters']:,} parameters, {rec['hidden_units']:,} hidden "
                f"units, 10^{rec['log10_paths']:.2f} paths")
    table = [Table1Row(r["model"], r["parameters"], r["hidden_units"], r["rescaling_groups"],
                       r["log10_paths"]) for r in rows]
    markdown = table1_markdown(table)
    atomic_write_text(ctx.out_dir / "table1.md", markdown + "\n")
    return {"rows": rows, "all_match": all(r["matches"] for r in rows), "markdown": markdown}


def draw_table1(ctx: Any, summary: dict[str, Any]) -> list[Any]:
    """The table as an image (ours beside the published counts)."""
    from ._plot import pyplot, save

    plt = pyplot()
    rows = summary["rows"]
    cells = [[r["model"], f"{r['parameters']:,}", f"{r['published_parameters'] or 0:,}",
              f"{r['hidden_units']:,}", f"{r['published_hidden_units'] or 0:,}",
              Table1Row(r["model"], 0, 0, 0, r["log10_paths"]).paths_text(),
              "yes" if r["matches"] else "NO"] for r in rows]
    fig, ax = plt.subplots(figsize=(11, 0.5 + 0.4 * len(rows)))
    ax.axis("off")
    tab = ax.table(cellText=cells, colLabels=["model", "parameters", "paper", "hidden units",
                                              "paper", "paths (computed)", "match"],
                   loc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    tab.scale(1, 1.3)
    ax.set_title(f"Table 1: parameters, hidden units, paths ({ctx.scale} scale)")
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]
