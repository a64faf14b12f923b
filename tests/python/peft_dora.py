"""DoRA (LoraConfig(use_dora=True)) against the real `peft` package (0.21.2), run by tests/peft_dora.rs.

The model is two Linear(8, 8) layers `fc1`, `fc2` with tanh between. Rust builds the same model.

    peft_dora.py base DIR          -- seeded base weights (base.safetensors) and inputs
                                      (inputs.safetensors), for both sides.
    peft_dora.py write DIR CASE    -- PEFT makes a DoRA adapter in DIR/CASE, sets A, B and the
                                      magnitude to random values, saves it; PEFT then loads it from
                                      the folder onto a fresh base, and its output, its gradients of
                                      fc1's A, B and magnitude (for the loss sum(out²), train mode)
                                      and scalings go to DIR/CASE/peft.safetensors.
        plain         r=4, lora_alpha=8
        patterns      rsLoRA, rank_pattern {"fc2": 2}, alpha_pattern {"fc1": 16}, lora_dropout 0.1
                      (no gradients: dropout is random in train mode)
    peft_dora.py check DIR ADAPTER -- Rust saved a PEFT adapter in ADAPTER and its outputs
                                      (out, merged) in ADAPTER/rust.safetensors: the config must have
                                      exactly the fields PEFT writes and use_dora true; PEFT loads it
                                      with PeftModel.from_pretrained (each layer a DoRA with the
                                      file's magnitude) and must give the same outputs, merged with
                                      merge_and_unload too.

Exits non-zero with a message on any mismatch. Nothing is fetched from a model hub.
"""
import json
import os
import sys

import peft_common
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

DIM = 8
PATHS = ("fc1", "fc2")
CASES = {
    "plain": dict(r=4, lora_alpha=8),
    "patterns": dict(r=4, lora_alpha=8, use_rslora=True, lora_dropout=0.1,
                     rank_pattern={"fc2": 2}, alpha_pattern={"fc1": 16}),
}


def fail(message):
    peft_common.fail("peft_dora", message)


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(DIM, DIM)
        self.fc2 = torch.nn.Linear(DIM, DIM)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def base_model(folder):
    model = Tiny()
    model.load_state_dict(load_file(os.path.join(folder, "base.safetensors")))
    return model.eval()


def inputs(folder):
    return load_file(os.path.join(folder, "inputs.safetensors"))["inputs"]


def write_base(folder):
    torch.manual_seed(0)
    model = Tiny()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(folder, "base.safetensors"))
    save_file({"inputs": torch.randn(5, DIM)}, os.path.join(folder, "inputs.safetensors"))
    print("peft_dora: OK, base written")


def magnitude(model, path):
    layer = model.base_model.model.get_submodule(path)
    if "default" not in layer.lora_magnitude_vector:
        fail(f"PEFT did not make {path} a DoRA")
    return layer.lora_magnitude_vector["default"].weight


def write(folder, case):
    adapter = os.path.join(folder, case)
    torch.manual_seed(1)
    model = get_peft_model(base_model(folder), LoraConfig(target_modules=list(PATHS), use_dora=True, **CASES[case]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_magnitude_vector" in name:
                parameter.mul_(0.5 + torch.rand_like(parameter))
            elif "lora_" in name:
                parameter.copy_(torch.randn_like(parameter))
    model.save_pretrained(adapter)
    loaded, out = peft_common.peft_output(base_model(folder), adapter, inputs(folder))
    with torch.no_grad():
        base_out = base_model(folder)(inputs(folder))
    if (out - base_out).abs().max() < 1e-3:
        fail(f"{case}: the adapter changes nothing; the check would prove nothing")
    tensors = {"out": out}
    if CASES[case].get("lora_dropout", 0.0) == 0.0:
        loaded.train()
        for name, parameter in loaded.named_parameters():
            parameter.requires_grad_("lora_" in name)
        loaded(inputs(folder)).pow(2).sum().backward()
        fc1 = loaded.base_model.model.fc1
        tensors["grad.lora_a"] = fc1.lora_A["default"].weight.grad
        tensors["grad.lora_b"] = fc1.lora_B["default"].weight.grad
        tensors["grad.lora_magnitude"] = magnitude(loaded, "fc1").grad
    for path in PATHS:
        layer = loaded.base_model.model.get_submodule(path)
        magnitude(loaded, path)
        tensors[f"scaling.{path}"] = torch.tensor([layer.scaling["default"]], dtype=torch.float64)
    save_file(tensors, os.path.join(adapter, "peft.safetensors"))
    print(f"peft_dora: OK, {case} written")


def check(folder, adapter):
    peft_common.check_config_fields("peft_dora", adapter)
    with open(os.path.join(adapter, "adapter_config.json")) as f:
        if json.load(f)["use_dora"] is not True:
            fail("the config does not say use_dora: true")
    rust = load_file(os.path.join(adapter, "rust.safetensors"))
    saved = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    model, out = peft_common.peft_output(base_model(folder), adapter, inputs(folder))
    for path in PATHS:
        if not torch.equal(magnitude(model, path), saved[f"base_model.model.{path}.lora_magnitude_vector"]):
            fail(f"PEFT's magnitude of {path} is not the file's")
    peft_common.compare_with_rust("peft_dora", model, out, rust, inputs(folder))


if __name__ == "__main__":
    peft_common.main("peft_dora", __doc__, sys.argv, write_base, write, check)
