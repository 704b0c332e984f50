# WorkPulse: `make run` starts the whole mesh, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto')
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test bench mutants lint protos check-protos install desktop-tools clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "WorkPulse needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) desktop-tools

# What the desktop agent's and the dashboard's tests need from Debian (a real X server, a
# window manager, xdotool, X apps to focus, a D-Bus daemon, Chromium), installed where this
# machine lets us (root with apt-get); elsewhere the tests say what is missing and skip
# (CI=true fails on any skip).
DESKTOP_TOOLS := Xvfb:xvfb openbox:openbox xdotool:xdotool xclock:x11-apps dbus-daemon:dbus-daemon chromium:chromium
desktop-tools:
	@missing=""; for pair in $(DESKTOP_TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing (the agent's and the dashboard's tests)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing) || echo "could not install$$missing; those tests will skip"; \
	else echo "note:$$missing not installed (apt-get install$$missing); those tests will skip"; fi

# Stubs are committed; this rebuilds them from protos/ (typed .pyi via mypy-protobuf).
protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --grpc_python_out=. \
		--mypy_out=. --mypy_grpc_out=. $(PROTOS)
	@for d in $$(find workpulse -path '*/v1' -type d); do touch $$d/__init__.py $$(dirname $$d)/__init__.py; done

# Fails when the committed stubs differ from what protos/ generates, or protos break lint.
check-protos: $(STAMP)
	$(BIN)/buf lint
	@tmp=$$(mktemp -d); \
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$$tmp --grpc_python_out=$$tmp \
		--mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTOS); \
	for f in $$(cd $$tmp && find . -type f); do \
		cmp -s $$tmp/$$f $$f || { echo "stale generated stub: $$f (run make protos)"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "generated stubs are up to date"

lint: $(STAMP) check-protos
	$(BIN)/ruff check .
	$(BIN)/ruff format --check workpulse services gateway agent tests
	$(BIN)/mypy

run: $(STAMP)
	$(BIN)/workpulse up

test: lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m tests.bench

# Removes each guard listed in tests/mutants/*.toml from a scratch copy and fails unless
# the tests named for it notice (tests/mutants/README.md). CI runs it after `make test`.
mutants: $(STAMP)
	$(BIN)/python -m tests.mutants $(MUTANTS_ARGS)

clean:
	rm -rf $(VENV) .data
