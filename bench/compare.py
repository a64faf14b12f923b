"""The PyTorch side of `make bench`: the same cases as the criterion benches (same shapes,
thread counts and iteration policy, bench/policy.json), on the libtorch the Rust side links.

    PYTHONPATH=.libtorch python3 bench/compare.py --out bench/python.json

`--quick` shortens every case and leaves out the 1 GiB tables (a smoke test);
`--only TEXT` runs the case ids that contain TEXT.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import torch  # noqa: E402

from pybench import forward, functional, harness, int8, llama, parametrize_cases, patch_cost, training  # noqa: E402,F401


def metadata(policy_file, quick, start_load, start_date):
    parallel = torch.__config__.parallel_info().splitlines()
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": start_date,
        "threads": policy_file["threads"],
        "parallel_backend": next((l.strip() for l in parallel if "parallel backend" in l), ""),
        "quick": quick,
        # The 1-minute load average when the cases started and ended: the machine may be
        # shared with builds.
        "loadavg": [f"{start_load:.2f}", f"{os.getloadavg()[0]:.2f}"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/python.json", help="where to write results")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--only", help="run only case ids containing this text")
    args = parser.parse_args()

    policy_file = harness.load_policy()
    bench = harness.Bench(policy_file, quick=args.quick, only=args.only)
    start_load = os.getloadavg()[0]
    start_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for run_case in harness.CASES:
        run_case(bench)
    output = {"meta": metadata(policy_file, args.quick, start_load, start_date), "cases": bench.results}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(output, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(bench.results)} cases written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
