# make deploy  — set up .venv (if needed) and run `edgeship deploy` on the embedded default model
# make test    — set up .venv (if needed), check lint and import layers, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeship-installed

.PHONY: setup deploy lint test test-fast clean

# torch first, pinned: the CPU wheel on this disk (an unpinned torch pulls a CUDA build)
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all,test]"
	# onnx2torch (the ONNX -> torch bridge for tflite/executorch) requires torchvision in its metadata;
	# --no-deps keeps the CPU torch wheel (pip would pull a CUDA torch) and edgeship never imports torchvision
	$(PY) -m pip install -q --no-deps onnx2torch==1.5.15
	# silero-vad: the reference the voice-activity glue is checked against (tests/test_vad_glue.py); it needs
	# torch (pinned above) and packaging; --no-deps so pip leaves that torch alone (torchaudio is an extra)
	$(PY) -m pip install -q --no-deps silero-vad==6.2.3
	touch $(STAMP)

setup: $(STAMP)

deploy: $(STAMP)
	$(VENV)/bin/edgeship deploy

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports

# every test; the 15 slowest are listed at the end of each run
test: lint
	$(PY) -m pytest -n 2 -q --durations=15

# the fast lane for a developer: no Lite0, no Chromium, no kotlinc, no Ray (CI runs them all)
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -q --durations=15 -m "not slow and not browser and not kotlin and not ray"

clean:
	rm -rf $(VENV) edgeship-out .pytest_cache
