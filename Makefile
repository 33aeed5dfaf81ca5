# Each target installs what it needs into .venv first, so they work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# uv installs without compiling bytecode, and where PYTHONDONTWRITEBYTECODE is set (this machine, CI) every
# `airflow` process then compiles Airflow from source again: `airflow version` took 7.1 s, 3.2 s compiled.
export UV_COMPILE_BYTECODE := 1
# The same for our own sources (the packages, tests, scripts, example DAGs): each pytest worker compiled and
# assertion-rewrote them again, 8.3 CPU-s to collect the provider's suite instead of 4.7. Python may cache
# them here (in __pycache__, which git ignores).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install lint demo demo-serve test test-emulator test-provider test-unit test-airflow2 test-floors test-package bench bench-peers docs clean

# The emulator (emulator/, its own distribution graph-mail-emulator) is installed editable beside the provider:
# the provider's tests use its pytest plugin, and uv takes the local path for the test extra's requirement.
$(STAMP): pyproject.toml emulator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e "./emulator[test,clients]" -e ".[test,lint,docs]"
	touch $(STAMP)

# The same suite on Airflow 2.11, in a second virtualenv with its own Airflow home.
VENV2  := .venv-airflow2
STAMP2 := $(VENV2)/.installed

$(STAMP2): pyproject.toml emulator/pyproject.toml
	$(PYTHON) -m venv $(VENV2)
	$(VENV2)/bin/python -m pip install --quiet --upgrade pip uv
	$(VENV2)/bin/uv pip install --quiet --python $(VENV2)/bin/python -e ./emulator -e ".[test]" "apache-airflow==2.11.*"
	touch $(STAMP2)

# The lowest version of every dependency pyproject.toml allows, all at once (uv's lowest-direct resolution:
# Airflow 2.11.0, common-compat 1.22.0, msal 1.32.0, ...), in a virtualenv of its own.
VENVF  := .venv-floors
STAMPF := $(VENVF)/.installed
# What the floors must do: sign in every way, send (small, large, drafts, retries), run DAGs through Airflow,
# and poll with the review gate's trigger (the client in a thread, through Airflow's asgiref).
FLOOR_TESTS := tests/test_hook.py tests/test_credentials.py tests/test_delivery.py tests/test_bad_inputs.py \
	tests/test_large_attachments.py tests/test_rendering.py tests/test_provider.py tests/test_readme.py \
	tests/test_dags.py::test_report_distribution_example \
	tests/test_review_gate.py::test_the_trigger_serialises_ids_only_and_runs_as_the_triggerer_runs_it

$(STAMPF): pyproject.toml emulator/pyproject.toml scripts/floors-constraints.txt
	rm -rf $(VENVF) && $(PYTHON) -m venv $(VENVF)  # from scratch: what an older install left would not be a floor
	$(VENVF)/bin/python -m pip install --quiet --upgrade pip uv
	$(VENVF)/bin/uv pip install --quiet --python $(VENVF)/bin/python --resolution lowest-direct \
		--constraint scripts/floors-constraints.txt -e ./emulator -e ".[test]"
	touch $(STAMPF)

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

# ruff and mypy on both packages (each under its own pyproject.toml): seconds, so CI runs them before the
# long suite.
lint: $(STAMP)
	$(BIN)/ruff check airflow_graph_mail tests scripts bench docs/conf.py docs/_ext
	cd emulator && ../$(BIN)/ruff check graph_mail_emulator tests
	$(BIN)/mypy
	$(BIN)/mypy tests scripts  # files, not the package: tests import their helpers as top-level modules
	$(BIN)/mypy bench --exclude bench/peers  # two calls: bench/run.py and bench/peers/run.py are both "run"
	$(BIN)/mypy bench/peers
	cd emulator && ../$(BIN)/mypy

# Both test trees at once, each with its own pytest configuration (the emulator's, emulator/tests/, imports
# nothing of the provider): one after the other left a CPU idle while the shorter ran. Each tree's output is
# printed whole when it ends. The emulator's clients extra is installed here: its tests of Microsoft's
# clients must run, not skip.
test: $(STAMP)
	$(MAKE) --no-print-directory -j2 --output-sync=target test-emulator test-provider

test-emulator: $(STAMP)
	REQUIRE_CLIENTS=1 $(BIN)/python -m pytest emulator/tests

test-provider: $(STAMP)
	$(BIN)/python -m pytest

# The fast tier: the pure modules' tests (recipients, headers, MIME, Graph-shaped dicts, config, retry,
# NDRs...) with no emulator and no Airflow run, on one process; conftest.py tells them apart.
test-unit: $(STAMP)
	GRAPH_MAIL_UNIT_ONLY=1 $(BIN)/python -m pytest -n 0 -q -m unit tests

test-airflow2: $(STAMP2)
	AIRFLOW_HOME=$(CURDIR)/$(VENV2)/airflow-home $(VENV2)/bin/python -m pytest

# Deselected: Airflow 2.11.0's ObjectStoragePath cannot be built beside universal-pathlib 0.3 (which the
# resolver picks for it unconstrained), whoever calls it; Airflow's constraint files pin 0.2.
test-floors: $(STAMPF)
	AIRFLOW_HOME=$(CURDIR)/$(VENVF)/airflow-home $(VENVF)/bin/python -m pytest $(FLOOR_TESTS) \
		--deselect tests/test_large_attachments.py::test_attachments_from_object_storage_and_fsspec

# The wheels and sdists as users get them: the emulator's alone where no Airflow is installed, then the
# provider's with plain pip beside each supported Airflow, its CLI only.
test-package: $(STAMP)
	$(BIN)/python scripts/check_package.py 2.11 3.0 3.1 3.2 latest

# The documentation site, from docs/: warnings (a broken internal link among them) are errors.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: $(CURDIR)/docs/_build/html/index.html"

# `make bench ONLY="delivered inbound"` runs those scenarios and replaces their rows, keeping the others'.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(if $(ONLY),--only $(ONLY))

bench-peers: $(STAMP) $(STAMPP)
	$(BIN)/python bench/peers/run.py

clean:
	rm -rf $(VENV) $(VENV2) $(VENVF) $(VENVP) .demo .bench .pytest_cache docs/_build
