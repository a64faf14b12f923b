"""`torch.nn.utils.parametrize` (50% magnitude pruning of a Linear's weight) uncached, in
`parametrize.cached()`, and removed with `leave_parametrized=True`, against a plain Linear
and the math by hand, under `no_grad` (benches/parametrize.rs)."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from .harness import BATCH, case, linear_policy

SIZES = (64, 4096)
SPARSITY = 0.5


class MagnitudePrune(nn.Module):
    """`tch_patch::MagnitudePrune`: a mask fixed when added (stable order of magnitudes,
    ties pruned by position), kept as a buffer."""

    def __init__(self, weight, sparsity):
        super().__init__()
        flat = weight.detach().abs().reshape(-1)
        pruned = round(sparsity * flat.numel())
        order = torch.sort(flat, stable=True).indices[:pruned]
        mask = torch.ones_like(flat).index_fill(0, order, 0.0).reshape(weight.shape)
        self.register_buffer("mask", mask)

    def forward(self, weight):
        return weight * self.mask


def pruned(size):
    module = nn.Linear(size, size)
    prune = MagnitudePrune(module.weight, SPARSITY)
    parametrize.register_parametrization(module, "weight", prune)
    return module


@case
def parametrized_forward(bench):
    with torch.no_grad():
        for size in SIZES:
            uncached = pruned(size)
            originals = uncached.parametrizations.weight
            w, mask, b = originals.original, originals[0].mask, uncached.bias
            plain = nn.Linear(size, size)
            baked = pruned(size)
            parametrize.remove_parametrizations(baked, "weight", leave_parametrized=True)
            x = torch.randn(BATCH, size)
            group, policy = f"parametrize_{size}", linear_policy(size)
            bench.run(group, "by_hand", policy, lambda: F.linear(x, w * mask, b))
            bench.run(group, "plain", policy, lambda: plain(x))
            bench.run(group, "uncached", policy, lambda: uncached(x))
            bench.run(group, "cached", policy, lambda: uncached(x), scope=parametrize.cached)
            bench.run(group, "baked", policy, lambda: baked(x))
