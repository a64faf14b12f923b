"""Loading at scale, side by side: peak resident memory and wall time of each way to load
one checkpoint, each in its own process (Rust: target/release/load-case; PyTorch: this
script with --case), on the same libtorch.

    python3 bench/load_memory.py --rust target/release/load-case --out bench/load_memory.json

Writes the checkpoints (f32, and bf16) under target/load-bench/ on the first run: a stack
of square linear layers, `nn.Sequential` names (`0.weight`, `0.bias`, ...). The page cache
is warmed before every case (the file read once), so that every case reads from memory.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

LAYERS = 32
HIDDEN = 4096  # 32 x 4096 x 4096 x 4 bytes: 2 GiB of f32 weights

RUST_CASES = ["init", "copy", "skeleton_copy", "skeleton_assign", "map", "quantize", "varstore"]
PYTHON_CASES = ["torch_init", "torch_load_state_dict", "torch_meta_assign"]


def model(torch, device=None):
    layers = [torch.nn.Linear(HIDDEN, HIDDEN, device=device) for _ in range(LAYERS)]
    return torch.nn.Sequential(*layers)


def python_case(case, path, kind):
    """One PyTorch case in this process: the JSON line load-case prints for Rust."""
    import torch
    from safetensors.torch import load_file

    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[kind]
    torch.set_default_dtype(dtype)
    started = time.perf_counter()
    if case == "torch_meta_assign":
        with torch.device("meta"):
            net = model(torch)
    else:
        net = model(torch)
    build = time.perf_counter() - started
    before = rss()
    started = time.perf_counter()
    if case == "torch_load_state_dict":
        net.load_state_dict(load_file(path))
    elif case == "torch_meta_assign":
        net.load_state_dict(load_file(path), assign=True)
    load = time.perf_counter() - started
    after = rss()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    checksum = sum(float(layer.weight.double().sum()) for layer in net)
    touch = time.perf_counter() - started
    return {
        "case": case,
        "kind": kind,
        "build_seconds": build,
        "load_seconds": load,
        "touch_seconds": touch,
        "rss_before_load": before,
        "rss_after_load": after,
        "rss_after_touch": rss(),
        "peak_rss_after_touch": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_rss": peak,
        "tensors": len(net.state_dict()),
        "checksum": checksum,
    }


def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def write_checkpoints(folder):
    import torch
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    paths = {}
    for kind, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        path = os.path.join(folder, f"stack-{LAYERS}x{HIDDEN}-{kind}.safetensors")
        paths[kind] = path
        if os.path.exists(path):
            continue
        torch.manual_seed(0)
        tensors = {}
        for i in range(LAYERS):
            tensors[f"{i}.weight"] = (torch.randn(HIDDEN, HIDDEN) * 0.02).to(dtype)
            tensors[f"{i}.bias"] = torch.zeros(HIDDEN, dtype=dtype)
        save_file(tensors, path + ".partial")
        os.replace(path + ".partial", path)
        del tensors
    return paths


def warm(path):
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def run_case(command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--case")
    parser.add_argument("--file")
    parser.add_argument("--kind", default="f32")
    parser.add_argument("--rust", default="target/release/load-case")
    parser.add_argument("--out", default="bench/load_memory.json")
    parser.add_argument("--folder", default="target/load-bench")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(python_case(args.case, args.file, args.kind)))
        return
    paths = write_checkpoints(args.folder)
    results = []
    for kind, path in paths.items():
        for case in RUST_CASES:
            warm(path)
            command = [args.rust, case, path, str(LAYERS), str(HIDDEN), kind]
            results.append(dict(run_case(command), side="rust"))
            print(f"rust {kind} {case}: peak {results[-1]['peak_rss'] / 2**30:.2f} GiB, "
                  f"load {results[-1]['load_seconds']:.3f} s", file=sys.stderr)
        for case in PYTHON_CASES:
            warm(path)
            command = [sys.executable, __file__, "--case", case, "--file", path, "--kind", kind]
            results.append(dict(run_case(command), side="python"))
            print(f"python {kind} {case}: peak {results[-1]['peak_rss'] / 2**30:.2f} GiB, "
                  f"load {results[-1]['load_seconds']:.3f} s", file=sys.stderr)
    out = {
        "layers": LAYERS,
        "hidden": HIDDEN,
        "files": {kind: os.path.getsize(path) for kind, path in paths.items()},
        "results": results,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
