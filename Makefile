# Each target installs what it needs into .venv first, so they work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo demo-serve test test-airflow2 bench bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test]"
	touch $(STAMP)

# The same suite on Airflow 2.11, in a second virtualenv with its own Airflow home.
VENV2  := .venv-airflow2
STAMP2 := $(VENV2)/.installed

$(STAMP2): pyproject.toml
	$(PYTHON) -m venv $(VENV2)
	$(VENV2)/bin/python -m pip install --quiet --upgrade pip uv
	$(VENV2)/bin/uv pip install --quiet --python $(VENV2)/bin/python -e ".[test]" "apache-airflow==2.11.*"
	touch $(STAMP2)

# The peers bench-peers compares us with, in their own virtualenv; a failed install is reported, not fatal.
VENVP  := .venv-peers
STAMPP := $(VENVP)/.installed

$(STAMPP): bench/peers/requirements.txt
	rm -rf $(VENVP) && $(PYTHON) -m venv $(VENVP)
	$(VENVP)/bin/python -m pip install --quiet --upgrade pip uv
	$(VENVP)/bin/uv pip install --python $(VENVP)/bin/python -r bench/peers/requirements.txt \
		> $(VENVP)/install.log 2>&1 || touch $(VENVP)/install-failed
	touch $(STAMPP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The same, then the emulator and its mailbox viewer stay up until Ctrl-C.
demo-serve: $(STAMP)
	$(BIN)/python scripts/demo.py --serve

test: $(STAMP)
	$(BIN)/python -m pytest

test-airflow2: $(STAMP2)
	AIRFLOW_HOME=$(CURDIR)/$(VENV2)/airflow-home $(VENV2)/bin/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-peers: $(STAMP) $(STAMPP)
	$(BIN)/python bench/peers/run.py

clean:
	rm -rf $(VENV) $(VENV2) $(VENVP) .demo .bench .pytest_cache
