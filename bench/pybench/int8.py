"""Int8 linear layers against float32 and the same int8 computation by hand, under
`no_grad` (benches/int8.rs), plus PyTorch's own dynamic int8 layer.

Groups `int8_{1,8,128}`: `by_hand` is the Rust side's dynamic forward written with the
same ATen ops (rows quantized per row, `torch._int_mm`, scaled); `weight_only_bf16` is
`torch._weight_int8pack_mm` on bfloat16 inputs; `quantize_dynamic` is
`torch.ao.quantization.quantize_dynamic` of the float layer (fbgemm, per-channel int8
weights), PyTorch's answer to the same need (Rust has no such case: "—" in the report).
Groups `float32_{1,8,128}`: the float32 layer (`by_hand`).
"""

import warnings

import torch
import torch.nn as nn

from .harness import case

INPUTS, OUTPUTS, BATCHES = 1024, 4096, (1, 8, 128)


def quantize(weight):
    high = weight.amax(1)
    scale = torch.maximum(high, -weight.amin(1)) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (weight / scale[:, None]).round_().clamp_(-127, 127).to(torch.int8), scale


@case
def int8(bench):
    torch.manual_seed(0)
    with torch.no_grad():
        layer = nn.Linear(INPUTS, OUTPUTS)
        q, scale = quantize(layer.weight)
        bias = layer.bias.detach()
        q_t = q.t()
        scale_bf16 = scale.to(torch.bfloat16)
        bias_bf16 = bias.to(torch.bfloat16)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            engine = torch.backends.quantized.engine
            torch.backends.quantized.engine = "fbgemm"
            dynamic = torch.ao.quantization.quantize_dynamic(
                nn.Sequential(layer), {nn.Linear}, dtype=torch.qint8
            )
            torch.backends.quantized.engine = engine

        def by_hand(xs):
            high = xs.amax(1, keepdim=True)
            row_scale = torch.maximum(high, -xs.amin(1, keepdim=True)) / 127.0
            row_scale = torch.where(row_scale > 0, row_scale, torch.ones_like(row_scale))
            xq = (xs / row_scale).round_().clamp_(-127, 127).to(torch.int8)
            return torch._int_mm(xq, q_t).float() * row_scale * scale + bias

        for batch in BATCHES:
            xs = torch.randn(batch, INPUTS)
            xs_bf16 = xs.to(torch.bfloat16)
            group = f"int8_{batch}"
            bench.run(group, "by_hand", "slow", lambda: by_hand(xs))
            bench.run(
                group,
                "weight_only_bf16",
                "slow",
                lambda: torch._weight_int8pack_mm(xs_bf16, q, scale_bf16) + bias_bf16,
            )
            bench.run(group, "quantize_dynamic", "slow", lambda: dynamic(xs))
            bench.run(f"float32_{batch}", "by_hand", "slow", lambda: layer(xs))
