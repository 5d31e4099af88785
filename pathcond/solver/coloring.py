"""Blocks of rescaling groups that share no parameter (SPEC section 4, block step).

Groups that are output units of one layer share no parameter, so they are merged into
clusters; a cluster conflicts with another when a layer connects them, and clusters are
coloured greedily. A cluster some layer connects to itself is split into single groups.
"""

from __future__ import annotations

import torch

from ..graph import RescalingGraph


def _find(parent: list[int], x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def group_blocks(graph: RescalingGraph) -> list[torch.Tensor]:
    """Partition the groups into blocks, each an index tensor of groups sharing no parameter."""
    h = graph.num_groups
    parent = list(range(h))
    for layer in graph.layers:
        rows = torch.unique(layer.row_groups[layer.row_groups >= 0]).tolist()
        for g in rows[1:]:
            a, b = _find(parent, rows[0]), _find(parent, g)
            if a != b:
                parent[max(a, b)] = min(a, b)
    cluster = torch.tensor([_find(parent, g) for g in range(h)], dtype=torch.int64)
    edges: set[tuple[int, int]] = set()
    split: set[int] = set()
    for layer in graph.layers:
        rows, cols = torch.broadcast_tensors(layer.row_groups.unsqueeze(1), layer.col_groups)
        valid = (rows >= 0) & (cols >= 0) & (rows != cols)
        if not bool(valid.any()):
            continue
        pairs = torch.unique(cluster[rows[valid]] * max(h, 1) + cluster[cols[valid]])
        for key in pairs.tolist():
            a, b = divmod(key, max(h, 1))
            if a == b:
                split.add(a)
            else:
                edges.add((min(a, b), max(a, b)))
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    colour: dict[int, int] = {}
    for c in sorted(set(cluster.tolist()) - split):
        used = {colour[n] for n in neighbours.get(c, ()) if n in colour}
        colour[c] = next(k for k in range(len(used) + 1) if k not in used)
    blocks: dict[int, list[int]] = {}
    singles: list[list[int]] = []
    for g, c in enumerate(cluster.tolist()):
        if c in split:
            singles.append([g])
        else:
            blocks.setdefault(colour[c], []).append(g)
    ordered = [blocks[k] for k in sorted(blocks)] + singles
    return [torch.tensor(b, dtype=torch.int64) for b in ordered]
