"""Cross-check of TorchScript export, run by tests/torchscript.rs with the repository's
torch (the same libtorch build tch links).

    torchscript_check.py DIR NAME...  -- for each NAME, torch.jit.load DIR/NAME.pt, run it
        on the inputs in DIR/NAME.io.safetensors (`input_0`, `input_1`...) and compare
        with the Rust outputs saved next to them (`output_0`...), to 1e-6; write the
        Python outputs to DIR/NAME.python.safetensors for Rust to compare too.

Exits non-zero with a message on any mismatch (the Rust test then fails).
"""
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

TOLERANCE = 1e-6


def fail(message):
    print(f"torchscript_check: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check(folder, name):
    module = torch.jit.load(os.path.join(folder, f"{name}.pt"), map_location="cpu")
    module.eval()
    with safe_open(os.path.join(folder, f"{name}.io.safetensors"), framework="pt") as f:
        io = {key: f.get_tensor(key) for key in f.keys()}
    outputs = {}
    count = sum(1 for key in io if key.startswith("input_"))
    if count == 0:
        fail(f"{name}: no inputs")
    for i in range(count):
        with torch.no_grad():
            out = module(io[f"input_{i}"])
        expected = io[f"output_{i}"]
        if out.shape != expected.shape or out.dtype != expected.dtype:
            fail(f"{name}: output {i} is {out.dtype}{tuple(out.shape)}, Rust's "
                 f"{expected.dtype}{tuple(expected.shape)}")
        error = (out - expected).abs().max().item()
        if error > TOLERANCE:
            fail(f"{name}: output {i} differs from Rust's by {error}")
        outputs[f"output_{i}"] = out.contiguous()
        print(f"{name}: output {i} {tuple(out.shape)} max|python-rust|={error:.3g}")
    save_file(outputs, os.path.join(folder, f"{name}.python.safetensors"))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        fail("usage: torchscript_check.py DIR NAME...")
    if not torch.__version__.startswith("2.13."):
        fail(f"torch {torch.__version__} is not the libtorch 2.13 tch links")
    for model_name in sys.argv[2:]:
        check(sys.argv[1], model_name)
    print(f"torchscript_check: OK, {len(sys.argv) - 2} models, torch {torch.__version__}")
