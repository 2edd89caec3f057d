# `make demo` and `make test` are all a newcomer needs; both start with `make install`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rajax-installed

.PHONY: install demo test bench clean-venv

install: $(STAMP)

# Re-installs only when the package description or the pinned versions change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[detect,dev]"
	touch $(STAMP)

# The demo uses a local YOLO checkpoint when one is at hand (the project's test input), else the
# default yolo11n.pt, which Ultralytics fetches when online.
DEMO_DETECTOR ?= $(wildcard ../shared/weights/yolo11n-pose.pt)

demo: install
	$(BIN)/rajax demo $(if $(DEMO_DETECTOR),--detector-weights $(DEMO_DETECTOR))

test: install
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=20 tests

bench: install
	$(BIN)/python tools/benchmark.py
	$(BIN)/python tools/benchmark_pipeline.py

clean-venv:
	rm -rf $(VENV)
