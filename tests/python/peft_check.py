"""Cross-checks of the PEFT layout, run by tests/peft.rs with the repository's torch.

    peft_check.py check DIR EXPECTED  -- DIR was written by Rust's save_peft_lora: open it
        as a PEFT user would (safetensors' safe_open, json), check keys, shapes, dtypes and
        config, compute each module's LoRA delta B @ A * scale and compare it with the
        deltas Rust wrote to EXPECTED (keyed by module path), to 1e-6.
    peft_check.py write DIR EXPECTED  -- write a PEFT LoRA adapter to DIR the way PEFT's
        save_pretrained lays it out, and its deltas to EXPECTED, for Rust to read back.

Exits non-zero with a message on any mismatch (the Rust test then fails).
"""
import json
import math
import os
import re
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

PREFIX = "base_model.model."
TOLERANCE = 1e-6


def fail(message):
    print(f"peft_check: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def pattern_key(pattern_keys, name):
    """PEFT's get_pattern_key: the first key matching `(.*\\.)?(key)$`, else the name."""
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", name):
            return key
    return name


def targeted(target_modules, name):
    """PEFT's check_target_module_exists for a list or a regex string."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return name in target_modules or any(name.endswith("." + t) for t in target_modules)


def check(folder, expected_path):
    with open(os.path.join(folder, "adapter_config.json")) as f:
        config = json.load(f)
    for field, wanted in [("peft_type", "LORA"), ("bias", "none"), ("fan_in_fan_out", False),
                          ("use_dora", False)]:
        if config.get(field) != wanted:
            fail(f"config field {field} is {config.get(field)!r}, expected {wanted!r}")
    for field in ["r", "lora_alpha", "target_modules", "lora_dropout", "use_rslora",
                  "task_type", "base_model_name_or_path", "inference_mode"]:
        if field not in config:
            fail(f"config has no field {field}")
    if not isinstance(config["r"], int) or config["r"] <= 0:
        fail(f"r is {config['r']!r}")
    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}

    modules = {}
    with safe_open(os.path.join(folder, "adapter_model.safetensors"), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != "pt":
            fail(f"metadata is {metadata!r}, expected format 'pt'")
        for key in f.keys():
            match = re.fullmatch(r"base_model\.model\.(.+)\.lora_([AB])\.weight", key)
            if match is None:
                fail(f"key {key!r} is not PEFT's base_model.model.<path>.lora_A/B.weight")
            modules.setdefault(match.group(1), {})[match.group(2)] = f.get_tensor(key)

    with safe_open(expected_path, framework="pt") as f:
        expected = {key: f.get_tensor(key) for key in f.keys()}
    if sorted(modules) != sorted(expected):
        fail(f"modules {sorted(modules)} != expected {sorted(expected)}")

    for name, ab in sorted(modules.items()):
        if set(ab) != {"A", "B"}:
            fail(f"{name} has only {sorted(ab)}")
        if not targeted(config["target_modules"], name):
            fail(f"target_modules {config['target_modules']!r} does not select {name}")
        a, b = ab["A"], ab["B"]
        r = rank_pattern.get(pattern_key(rank_pattern.keys(), name), config["r"])
        alpha = alpha_pattern.get(pattern_key(alpha_pattern.keys(), name), config["lora_alpha"])
        out_features, in_features = expected[name].shape
        if tuple(a.shape) != (r, in_features) or tuple(b.shape) != (out_features, r):
            fail(f"{name}: A {tuple(a.shape)} and B {tuple(b.shape)} do not fit r={r}, "
                 f"weight [{out_features}, {in_features}]")
        scale = alpha / math.sqrt(r) if config["use_rslora"] else alpha / r
        delta = (b @ a) * scale
        error = (delta - expected[name]).abs().max().item()
        if error > TOLERANCE:
            fail(f"{name}: delta differs from Rust's by {error}")
        print(f"{name}: r={r} alpha={alpha} A{tuple(a.shape)} B{tuple(b.shape)} "
              f"{a.dtype} max|delta-rust|={error:.3g}")
    print(f"peft_check: OK, {len(modules)} modules, torch {torch.__version__}")


def write(folder, expected_path):
    """A LoRA adapter as PEFT saves it: two q/v projections, one of another rank."""
    torch.manual_seed(0)
    shapes = {
        "model.layers.0.self_attn.q_proj": (12, 10, 4),
        "model.layers.0.self_attn.v_proj": (12, 10, 4),
        "model.layers.1.self_attn.q_proj": (12, 10, 2),
    }
    config = {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": "tiny-test-model",
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_pattern": None,
        "layers_to_transform": None,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": 4,
        "rank_pattern": {"layers.1.self_attn.q_proj": 2},
        "revision": None,
        "target_modules": ["q_proj", "v_proj"],
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": False,
    }
    tensors, deltas = {}, {}
    for name, (out_features, in_features, r) in shapes.items():
        a = torch.randn(r, in_features) / math.sqrt(in_features)
        b = torch.randn(out_features, r) * 0.1
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b
        deltas[name] = (b @ a) * (config["lora_alpha"] / r)
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    save_file(deltas, expected_path)
    print(f"peft_check: wrote {len(shapes)} modules, torch {torch.__version__}")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("check", "write"):
        fail("usage: peft_check.py check|write DIR EXPECTED")
    if not torch.__version__.startswith("2.13."):
        fail(f"torch {torch.__version__} is not the libtorch 2.13 tch links")
    {"check": check, "write": write}[sys.argv[1]](sys.argv[2], sys.argv[3])
