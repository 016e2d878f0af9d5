# Two entry points: `make run` (index the seed articles, answer a sample query) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

QUERY ?= phone call between the US and Russian defence ministers

.PHONY: run test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 -c constraints.txt
	$(PY) -m pip install -q -e '.[test,fast]' -c constraints.txt
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/toolkit index data/articles --index data/index
	$(VENV)/bin/toolkit query "$(QUERY)" --index data/index -k 5

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) data/index .pytest_cache
