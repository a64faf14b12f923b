# The two commands of the README. Each installs libtorch 2.13.0 first when it is missing.
.PHONY: demo test lint libtorch bench ui-bless public-paths public-paths-check rustdoc-json msrv

CARGO ?= cargo

libtorch:
	@bash scripts/install-libtorch.sh

# Release build of the flagship example (pre-train, patch from a string, fine-tune, save, export).
demo: libtorch
	$(CARGO) run --release --example finetune

# Everything CI checks: formatting, lints, API docs without a warning, unit, integration
# (with the Python cross-checks of tests/python/), doc and UI (trybuild) tests.
test: libtorch
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps
	$(MAKE) public-paths-check
	$(MAKE) msrv
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

lint: libtorch
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Benchmarks side by side with PyTorch on the same libtorch: every criterion bench of
# benches/ (release), the zero-cost benches again counting instructions instead of time
# (Linux perf events; skipped with a message where the machine has no counters) and once
# more timing each variant in alternation with its baseline,
# bench/compare.py (the same cases in PyTorch; models/benches/llama.rs against transformers
# and PEFT), bench/load_memory.py (each way to load a 2 GiB checkpoint in its own process,
# Rust and PyTorch: peak memory and time; 3 GiB of files under target/load-bench), then
# bench/report writes bench/RESULTS.md, bench/patch_cost.png and bench/load_memory.png.
# About 26 minutes on 2 cores, plus the build.
# BENCH_NOTE="..." adds a note to RESULTS.md (e.g. that the machine was busy).
BENCHES := $(basename $(notdir $(wildcard benches/*.rs)))
# The benches whose cases compare a patched module with its hand-written twin.
COUNTED_BENCHES := forward functional parametrize training
BENCH_NOTE ?=
# Passed to bench/report through the environment: no shell quoting to break.
export BENCH_NOTE
# glibc moves its mmap threshold with each process's history: a 2 MiB temporary then either
# reuses heap pages or maps (and page-faults in) fresh ones on every call, which moved one
# PyTorch case between 0.6 and 5 ms across runs. Fixed thresholds (32 MiB, glibc's largest
# mmap threshold; trimming only past 512 MiB), the same for both sides.
bench: export MALLOC_MMAP_THRESHOLD_ = 33554432
bench: export MALLOC_TRIM_THRESHOLD_ = 536870912

bench: libtorch
	rm -rf target/criterion target/criterion-instructions target/paired
	$(CARGO) bench $(foreach b,$(BENCHES),--bench $(b))
	$(CARGO) bench -p tch-patch-models --bench llama
	BENCH_MEASURE=instructions CRITERION_HOME=$(CURDIR)/target/criterion-instructions \
		$(CARGO) bench $(foreach b,$(COUNTED_BENCHES),--bench $(b))
	BENCH_MEASURE=paired BENCH_PAIRED_DIR=$(CURDIR)/target/paired \
		$(CARGO) bench $(foreach b,$(COUNTED_BENCHES),--bench $(b))
	PYTHONPATH=.libtorch python3 bench/compare.py --out bench/python.json
	$(CARGO) build --release -p bench-load-case
	PYTHONPATH=.libtorch python3 bench/load_memory.py --rust target/release/load-case --out bench/load_memory.json
	$(CARGO) run --release -p bench-report

# The declared rust-version (Cargo.toml) builds the libraries: rustup fetches that
# toolchain (minimal profile) the first time; its own target folder keeps the main one warm.
MSRV := $(shell sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
msrv: libtorch
	rustup toolchain install $(MSRV) --profile minimal --no-self-update
	$(CARGO) +$(MSRV) check --workspace --lib --target-dir target/msrv

# Every public path of the crate (rustdoc's JSON output, which stable rustdoc writes under
# RUSTC_BOOTSTRAP=1; only rustdoc sees it, through scripts/rustdoc-json): public-paths.txt.
# The check fails on an item with two public paths (besides the prelude) or on a list that
# differs from the committed one; `make public-paths` rewrites it: review the diff.
RUSTDOC_JSON := target/doc/tch_patch.json
rustdoc-json:
	RUSTDOC=$(CURDIR)/scripts/rustdoc-json $(CARGO) rustdoc --lib -p tch-patch -- -Z unstable-options --output-format json

public-paths: libtorch rustdoc-json
	python3 scripts/public_paths.py $(RUSTDOC_JSON) --write public-paths.txt

public-paths-check: libtorch rustdoc-json
	python3 scripts/public_paths.py $(RUSTDOC_JSON) --check public-paths.txt > /dev/null

# Re-writes tests/ui/*.stderr from the compiler's output: review every diff before committing.
ui-bless: libtorch
	TRYBUILD=overwrite $(CARGO) test --test ui
