"""`torch.func.functional_call` against the direct forward and the op by hand, under
`no_grad` (benches/functional.rs)."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from .harness import BATCH, case, linear_policy

SIZES = (64, 4096)


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
