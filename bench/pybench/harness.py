"""Timing with criterion's iteration policy, and the registry of case functions.

The policy (warm-up, sample count, measurement time, linear or flat sampling) and the
thread counts come from bench/policy.json, which the Rust benches read too. Each case is
timed as criterion times `b.iter(routine)`: a loop of `n` calls between two clock reads,
the routine's result dropped inside the loop. A case's time is the median of its samples'
per-iteration averages, its spread their median absolute deviation times 1.4826 (criterion's
`median_abs_dev`).
"""

import contextlib
import json
import math
import pathlib
import statistics
import sys
import time

import torch

POLICY_FILE = pathlib.Path(__file__).resolve().parent.parent / "policy.json"

#: Rows of the input batch of the forward cases (`common::BATCH` on the Rust side).
BATCH = 16

#: Case functions, in registration order. Each takes a `Bench` and times its variants.
CASES = []


def case(function):
    """Registers a case function: `@case def my_case(bench): ...`."""
    CASES.append(function)
    return function


def load_policy():
    with open(POLICY_FILE, encoding="utf-8") as file:
        return json.load(file)


def iteration_counts(policy, mean_ns):
    """Iterations per sample, as criterion 0.5 computes them from the warm-up's mean."""
    n = policy["samples"]
    target_ns = policy["measurement_s"] * 1e9
    if policy["sampling"] == "flat":
        per_sample = max(1, math.ceil(target_ns / n / mean_ns))
        return [per_sample] * n
    total_runs = n * (n + 1) // 2
    d = max(1, math.ceil(target_ns / mean_ns / total_runs))
    return [d * i for i in range(1, n + 1)]


def timed_loop(routine, iterations):
    start = time.perf_counter_ns()
    for _ in range(iterations):
        routine()
    return time.perf_counter_ns() - start


def measure(routine, policy):
    """Warm-up by doubling (as criterion), then the samples; returns the case's summary."""
    warm_up_ns = policy["warm_up_s"] * 1e9
    iterations, total_iterations, elapsed = 1, 0, 0
    while True:
        elapsed += timed_loop(routine, iterations)
        total_iterations += iterations
        if elapsed > warm_up_ns:
            break
        iterations *= 2
    counts = iteration_counts(policy, elapsed / total_iterations)
    averages = [timed_loop(routine, count) / count for count in counts]
    median = statistics.median(averages)
    mad = statistics.median(abs(a - median) for a in averages) * 1.4826
    return {
        "median_ns": median,
        "mad_ns": mad,
        "samples": len(averages),
        "iterations": sum(counts),
    }


class Bench:
    """Runs variants once per thread count and collects results by case id
    `group/variant/t{threads}` (the ids of the Rust side)."""

    def __init__(self, policy_file, quick=False, only=None):
        self.threads = policy_file["threads"]
        self.policies = policy_file["policies"]
        self.quick = quick
        self.only = only
        self.results = {}

    def policy(self, name):
        policy = dict(self.policies[name])
        if self.quick:
            policy.update(warm_up_s=0.01, measurement_s=0.05, samples=10)
        return policy

    def run(self, group, variant, policy, routine, scope=contextlib.nullcontext):
        """Times `routine` in `group` as `variant`, inside a fresh `scope()` per thread
        count (for `parametrize.cached`)."""
        for threads in self.threads:
            case_id = f"{group}/{variant}/t{threads}"
            if self.only and self.only not in case_id:
                continue
            torch.set_num_threads(threads)
            with scope():
                result = measure(routine, self.policy(policy))
            self.results[case_id] = result
            print(f"{case_id:<50} {format_ns(result['median_ns']):>12}", file=sys.stderr)


def format_ns(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def linear_policy(size):
    """The policy of a `size`x`size` Linear case, as `Policy::for_linear` on the Rust side."""
    return "fast" if size <= 256 else "slow"
