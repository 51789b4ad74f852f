# One command each: `make repro` (set up + run the study), `make test` (set up + tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands run `python` from PATH: make it the venv's.
export PATH := $(CURDIR)/$(BIN):$(PATH)
# No usage reports: DVC's analytics, MLflow's telemetry, Ray's usage stats.
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0
export TF_CPP_MIN_LOG_LEVEL := 2
# Debian's dataset-fashion-mnist and ../shared/data are the offline sources fetch looks in.
export DATA_MIRRORS ?= $(abspath ../shared/data)

.PHONY: setup browser postgresql vega plots repro test lint format bench bench-quick bench-search lock clean mlflow-ui report

setup: $(STAMP)

# requirements.lock is pinned for Python 3.11. A .venv that is not a whole 3.11 venv (an
# interrupted `python3 -m venv` without Debian's python3.11-venv leaves one without pip) is
# made again rather than failing on every later `make`.
IS_311 := -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'
WRONG_PYTHON = requirements.lock is pinned for Python 3.11; PYTHON=$(PYTHON) is
NO_VENV = has no venv module with pip (ensurepip); on Debian or Ubuntu: 'sudo apt-get install

$(STAMP): requirements.lock
	@$(PYTHON) $(IS_311) 2>/dev/null || { echo "error: $(WRONG_PYTHON) $$($(PYTHON) --version \
	  2>&1 || echo 'not found'). Install Python 3.11, then e.g. 'make PYTHON=python3.11 \
	  $(or $(MAKECMDGOALS),setup)'" | tr -s ' ' >&2; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "error: $(PYTHON) $(NO_VENV) \
	  python3.11-venv' (or python3-venv where python3 is 3.11)" | tr -s ' ' >&2; exit 1; }
	@{ $(BIN)/python $(IS_311) && test -x $(BIN)/pip; } 2>/dev/null || \
	  { echo "making $(VENV) with $(PYTHON)"; rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q -r requirements.lock
	touch $@

# tools.ray_repro: `dvc repro` with the graph's independent stages in parallel on Ray (a local
# instance, or the cluster at RAY_ADDRESS), recorded in dvc.lock by DVC's own commit.
# tools.tidy: a training killed before DVC restored its stage from the cache leaves a
# backup and a RUNNING MLflow run that no stage would clean up.
repro: setup
	$(BIN)/python -m tools.ray_repro
	$(BIN)/python -m tools.tidy

# The tests render the MLflow UI in Debian's headless Chromium.
browser:
	@command -v chromium >/dev/null || { test "$$(id -u)" = 0 && apt-get update -qq && \
	  apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "error: the tests need Debian's chromium: sudo apt-get install chromium"; exit 1; }

# `dvc plots show` offline: DVC's page loads Vega, Vega-Lite and Vega-Embed from a CDN, so
# tools.vega_template inlines the npm builds pinned in vega/package-lock.json into a copy of it.
# The template is also set in .dvc/config.local (not the committed config, where a fresh clone
# without it would fail), so a plain `dvc plots show` renders offline too.
VEGA_STAMP := vega/node_modules/.installed
VEGA_TEMPLATE := vega/offline.html

vega: $(VEGA_TEMPLATE)

$(VEGA_STAMP): vega/package-lock.json
	cd vega && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

$(VEGA_TEMPLATE): $(VEGA_STAMP) tools/vega_template.py $(STAMP)
	$(BIN)/python -m tools.vega_template $@
	$(BIN)/dvc config --local plots.html_template ../$@

plots: vega
	$(BIN)/dvc plots show --html-template $(VEGA_TEMPLATE)

# tests/tracking/test_team_server.py runs the team tracking server's store on a throwaway
# cluster of Debian's PostgreSQL (its initdb and pg_ctl).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { test "$$(id -u)" = 0 && \
	  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; } || \
	  { echo "error: the tests need Debian's postgresql: sudo apt-get install postgresql"; exit 1; }

# tests/reports/test_plots_offline.py makes its own template from the npm packages.
test: setup browser postgresql $(VEGA_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

mlflow-ui: setup
	$(BIN)/python -m tools.mlflow_ui 5000

lock: setup
	$(BIN)/pip install -q -r requirements.in
	{ echo "# Exact versions of every package (Python 3.11). Regenerate with \`make lock\` after editing requirements.in."; \
	  $(BIN)/pip freeze --exclude-editable; } > requirements.lock

clean:
	rm -rf $(VENV)

# The seed study sequentially and in parallel, bare, notebook and DVC's floor (about an hour
# here): prints a last `bench:` line and writes reports/bench.md with the targets.
bench: setup
	$(BIN)/python -m bench.run

# Every variant for 2 epochs: a quick look, no report (bench.run --report PATH writes one).
bench-quick: setup
	$(BIN)/python -m bench.run --quick

# The search stage at its default budget vs the README's width x depth grid, chosen on the
# validation split and compared on a held-out slice of train, never on test (real data: run
# `dvc repro prepare` first); prints a last `bench-search:` line.
bench-search: setup
	$(BIN)/python -m bench.search

# One table across DVC and MLflow; EXPS="exp1 exp2" compares DVC experiments instead.
report: setup
	$(BIN)/python -m tools.report $(foreach e,$(EXPS),--exp $(e))
