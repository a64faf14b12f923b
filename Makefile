# The two commands of the README. Each installs libtorch 2.13.0 first when it is missing.
.PHONY: demo test lint libtorch bench ui-bless

CARGO ?= cargo

libtorch:
	@bash scripts/install-libtorch.sh

# Release build of the flagship example (pre-train, patch from a string, fine-tune, save, export).
demo: libtorch
	$(CARGO) run --release --example finetune

# Everything CI checks: formatting, lints, unit, integration, doc and UI (trybuild) tests.
test: libtorch
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

lint: libtorch
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: libtorch
	$(CARGO) bench --bench patch_cost

# Re-writes tests/ui/*.stderr from the compiler's output: review every diff before committing.
ui-bless: libtorch
	TRYBUILD=overwrite $(CARGO) test --test ui
