# Thin targets: each one command. `make test` and `make demo` need only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test demo bench drill dev-server worker clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet -e '.[test]' && touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) demo/run.py $(if $(ONCE),--once)

bench: $(STAMP)
	$(PY) bench/run.py $(ARGS)

drill: $(STAMP)
	$(PY) bench/drill.py $(ARGS)

dev-server: $(STAMP)
	$(VENV)/bin/temporal server start-dev --ui-port 8233 --search-attribute LetheStatus=Keyword --search-attribute LetheSubjectRef=Keyword --search-attribute LethePendingSystems=KeywordList --search-attribute LetheDeadline=Datetime

worker: $(STAMP)
	$(PY) worker.py

clean:
	rm -rf $(VENV) demo/.state .pytest_cache *.egg-info
