"""`torch.func.functional_call` against the direct forward and the op by hand, under
`no_grad` (benches/functional.rs)."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from .harness import BATCH, case, linear_policy

SIZES = (64, 4096)
LAYERS, DEEP_WIDTH = 300, 8


@case
def functional_vs_direct(bench):
    with torch.no_grad():
        for size in SIZES:
            module = nn.Linear(size, size)
            w2, b2 = torch.randn(size, size), torch.randn(size)
            x = torch.randn(BATCH, size)
            overrides = {"weight": w2, "bias": b2}
            group, policy = f"functional_{size}", linear_policy(size)
            bench.run(group, "by_hand", policy, lambda: F.linear(x, w2, b2))
            bench.run(group, "direct", policy, lambda: module(x))
            bench.run(
                group,
                "functional_call",
                policy,
                lambda: functional_call(module, overrides, (x,), strict=True),
            )


class Deep(nn.Module):
    """Many layers, one of which the forward uses (benches/functional.rs `Deep`)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(DEEP_WIDTH, DEEP_WIDTH) for _ in range(LAYERS))

    def forward(self, x):
        return self.layers[0](x)


@case
def functional_deep(bench):
    with torch.no_grad():
        module = Deep()
        w2, b = torch.randn(DEEP_WIDTH, DEEP_WIDTH), module.layers[0].bias
        x = torch.randn(BATCH, DEEP_WIDTH)
        overrides = {"layers.0.weight": w2}
        group = f"functional_deep_{LAYERS}"
        bench.run(group, "by_hand", "fast", lambda: F.linear(x, w2, b))
        bench.run(group, "functional_call", "fast", lambda: functional_call(module, overrides, (x,)))
