"""Brute-force oracle of the Lloyd step: row by row, centre by centre, in Python floats."""
from __future__ import annotations

import torch


def kmeans_assign(x, centers):
    G, n, D = x.shape
    K = centers.shape[1]
    labels = torch.zeros(G, n, dtype=torch.int64)
    counts = torch.zeros(G, K, dtype=torch.float64)
    sums = torch.zeros(G, K, D, dtype=torch.float64)
    for g in range(G):
        for i in range(n):
            row = [float(v) for v in x[g, i]]
            dist = [sum((a - float(b)) ** 2 for a, b in zip(row, centers[g, k])) for k in range(K)]
            best = min(range(K), key=lambda k: (dist[k], k))
            labels[g, i] = best
            counts[g, best] += 1
            sums[g, best] += torch.tensor(row, dtype=torch.float64)
    return labels, counts, sums
