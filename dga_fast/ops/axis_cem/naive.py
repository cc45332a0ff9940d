"""Brute-force oracle of the split test's CEM step: point by point, class by class, in Python floats."""
from __future__ import annotations

import math

import torch


def axis_cem_assign(t, comp, prev, base, mean, var):
    G, n = t.shape
    K, m = base.shape[1:]
    cls = torch.zeros(G, n, dtype=torch.int64)
    cnt, s1, s2 = (torch.zeros(G, K, m, dtype=torch.float64) for _ in range(3))
    for g in range(G):
        for i in range(n):
            k, ti = int(comp[g, i]), float(t[g, i])
            scores = [float(base[g, k, s]) - 0.5 * (ti - float(mean[g, k, s])) ** 2 / float(var[g, k])
                      for s in range(m)]
            nan = [s for s, v in enumerate(scores) if math.isnan(v)]
            best = nan[0] if nan else max(range(m), key=lambda s: (scores[s], -s))
            cls[g, i] = best
            cnt[g, k, best] += 1
            s1[g, k, best] += ti
            s2[g, k, best] += ti * ti
    return cls, (cls != prev).sum(1), cnt, s1, s2


def axis_project(x, labels, means, q):
    G, n, D = x.shape
    t = torch.zeros(G, n, dtype=torch.float64)
    for g in range(G):
        for i in range(n):
            k = int(labels[g, i])
            t[g, i] = sum((float(x[g, i, d]) - float(means[g, k, d])) * float(q[g, k, d]) for d in range(D))
    return t
