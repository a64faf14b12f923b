"""What the PEFT cross-checks (peft_real.py, peft_embedding.py) share: failing with a message,
loading an adapter folder as PEFT does, comparing PEFT's outputs with Rust's, and the command
line (base DIR, write DIR CASE, check DIR ADAPTER)."""
import json
import os
import sys
import tempfile
import warnings

import torch
from peft import LoraConfig, PeftModel

TOLERANCE = 1e-5


def fail(script, message):
    print(f"{script}: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check_config_fields(script, adapter):
    """The adapter's config has exactly the fields PEFT 0.21's save_pretrained writes."""
    with open(os.path.join(adapter, "adapter_config.json")) as f:
        fields = set(json.load(f))
    with tempfile.TemporaryDirectory() as folder:
        LoraConfig(target_modules=["q"]).save_pretrained(folder)
        with open(os.path.join(folder, "adapter_config.json")) as f:
            expected = set(json.load(f))
    if fields != expected:
        fail(script, f"config fields differ from PEFT's: extra {sorted(fields - expected)}, "
             f"missing {sorted(expected - fields)}")


def peft_output(base, adapter, inputs):
    """PEFT's model with the adapter as it loads it from its folder onto `base`, and its output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PeftModel.from_pretrained(base, adapter).eval()
    with torch.no_grad():
        return model, model(inputs)


def compare_with_rust(script, model, out, rust, inputs):
    """PEFT's output and its merge_and_unload output against Rust's `out` and `merged`."""
    difference = (out - rust["out"]).abs().max().item()
    if difference > TOLERANCE:
        fail(script, f"PEFT's output is {difference:.3g} away from Rust's")
    with torch.no_grad():
        merged = model.merge_and_unload()(inputs)
    merged_difference = (merged - rust["merged"]).abs().max().item()
    if merged_difference > TOLERANCE:
        fail(script, f"PEFT's merged output is {merged_difference:.3g} away from Rust's merge")
    print(f"{script}: OK, PEFT loads the Rust adapter: max diff {difference:.3g}, "
          f"merged {merged_difference:.3g}")


def main(script, usage, argv, write_base, write, check):
    if len(argv) == 3 and argv[1] == "base":
        write_base(argv[2])
    elif len(argv) == 4 and argv[1] == "write":
        write(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "check":
        check(argv[2], argv[3])
    else:
        fail(script, f"usage: {usage}")
