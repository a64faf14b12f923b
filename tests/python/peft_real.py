"""Cross-checks with the real `peft` package (0.21.2), run by tests/peft_real.rs.

The model is a chain of six Linear(8, 8) layers with tanh between, at the module paths
attn.q, attn.v, blocks.0.attn.q, blocks.0.attn.v, blocks.1.attn.q, blocks.1.attn.v: `attn.q`
is a suffix of `blocks.1.attn.q`, so pattern keys overlap. Rust builds the same chain.

    peft_real.py base DIR             -- seeded base weights (base.safetensors) and an input
                                         (input.safetensors), for both sides.
    peft_real.py write DIR CASE       -- PEFT makes an adapter in DIR/CASE with non-zero B and
                                         saves it; PEFT then loads it from the folder onto a
                                         fresh base, and its output goes to DIR/CASE/peft.safetensors.
        patterns      rank/alpha patterns with overlapping keys, as save_pretrained writes them
        file_order    the same adapter with the alpha_pattern keys hand-reordered in the file
        bf16          the adapter's tensors saved in bfloat16 (the model is float32)
        alora, lora_bias, target_parameters
                      options Rust does not implement (alora_invocation_tokens, lora_bias,
                      target_parameters): Rust must refuse each by its field's name
    peft_real.py check DIR ADAPTER    -- Rust saved a PEFT adapter in ADAPTER and its outputs
                                         (out, merged) in ADAPTER/rust.safetensors: PEFT loads
                                         it with PeftModel.from_pretrained and must give the
                                         same outputs, merged with merge_and_unload too; the
                                         config must have exactly the fields PEFT writes.

Exits non-zero with a message on any mismatch. Nothing is fetched from a model hub.
"""
import json
import os
import sys

import peft_common
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

PATHS = ["attn.q", "attn.v", "blocks.0.attn.q", "blocks.0.attn.v", "blocks.1.attn.q", "blocks.1.attn.v"]
DIM = 8
# Adapters made with an option Rust refuses, by case name.
REFUSED = {
    "alora": dict(alora_invocation_tokens=[1, 2]),
    "lora_bias": dict(lora_bias=True),
    "target_parameters": dict(target_modules=None, target_parameters=["attn.q.weight"]),
}


def fail(message):
    peft_common.fail("peft_real", message)


class Attn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q = torch.nn.Linear(DIM, DIM)
        self.v = torch.nn.Linear(DIM, DIM)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Attn()


class Chain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Attn()
        self.blocks = torch.nn.ModuleList([Block(), Block()])

    def forward(self, x):
        for path in PATHS:
            x = torch.tanh(self.get_submodule(path)(x))
        return x


def base_model(folder):
    model = Chain()
    model.load_state_dict(load_file(os.path.join(folder, "base.safetensors")))
    return model.eval()


def inputs(folder):
    return load_file(os.path.join(folder, "input.safetensors"))["x"]


def write_base(folder):
    torch.manual_seed(0)
    model = Chain()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(folder, "base.safetensors"))
    save_file({"x": torch.randn(5, DIM)}, os.path.join(folder, "input.safetensors"))
    print("peft_real: OK, base written")


def peft_output(folder, adapter):
    """What PEFT computes with the adapter as it loads it from its folder."""
    return peft_common.peft_output(base_model(folder), adapter, inputs(folder))


def write(folder, case):
    adapter = os.path.join(folder, case)
    torch.manual_seed(1)
    options = dict(r=4, lora_alpha=8, target_modules=["q", "v"], init_lora_weights=False)
    if case in ("patterns", "file_order"):
        options.update(rank_pattern={"blocks.1.attn.q": 2},
                       alpha_pattern={"attn.q": 16, "blocks.1.attn.q": 2})
    options.update(REFUSED.get(case, {}))
    model = get_peft_model(base_model(folder), LoraConfig(**options))
    if case == "bf16":
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.data = parameter.data.to(torch.bfloat16)
    model.save_pretrained(adapter)
    config_path = os.path.join(adapter, "adapter_config.json")
    with open(config_path) as f:
        config = json.load(f)
    if case == "file_order":
        if list(config["alpha_pattern"]) != ["attn.q", "blocks.1.attn.q"]:
            fail(f"save_pretrained wrote alpha_pattern {config['alpha_pattern']}, expected sorted keys")
        config["alpha_pattern"] = {"blocks.1.attn.q": 2, "attn.q": 16}
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)  # no sort_keys: this order is the file's
    if case in REFUSED:
        print(f"peft_real: OK, {case} written")
        return
    loaded, out = peft_output(folder, adapter)
    with torch.no_grad():
        base_out = base_model(folder)(inputs(folder))
    if (out - base_out).abs().max() < 1e-3:
        fail(f"{case}: the adapter changes nothing; the check would prove nothing")
    tensors = {"out": out}
    for path in PATHS:
        layer = loaded.base_model.model.get_submodule(path)
        tensors[f"scaling.{path}"] = torch.tensor([layer.scaling["default"]], dtype=torch.float64)
        if case == "bf16" and layer.lora_A["default"].weight.dtype != torch.float32:
            fail(f"PEFT loaded {path}'s lora_A as {layer.lora_A['default'].weight.dtype}")
    save_file(tensors, os.path.join(adapter, "peft.safetensors"))
    scalings = {p: round(float(tensors[f"scaling.{p}"]), 6) for p in PATHS}
    print(f"peft_real: OK, {case} written, scalings {scalings}")


def check(folder, adapter):
    peft_common.check_config_fields("peft_real", adapter)
    rust = load_file(os.path.join(adapter, "rust.safetensors"))
    model, out = peft_output(folder, adapter)
    peft_common.compare_with_rust("peft_real", model, out, rust, inputs(folder))


if __name__ == "__main__":
    peft_common.main("peft_real", __doc__, sys.argv, write_base, write, check)
