# One command each: `make repro` (set up + run the study), `make test` (set up + tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands run `python` from PATH: make it the venv's.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export TF_CPP_MIN_LOG_LEVEL := 2
# Debian's dataset-fashion-mnist and ../shared/data are the offline sources fetch looks in.
export DATA_MIRRORS ?= $(abspath ../shared/data)

.PHONY: setup repro test lint format bench bench-quick lock clean mlflow-ui report

setup: $(STAMP)

$(STAMP): requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	touch $@

repro: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

mlflow-ui: setup
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$(CURDIR)/mlflow.db

lock: setup
	$(BIN)/pip install -q -r requirements.in
	{ echo "# Exact versions of every package (Python 3.11). Regenerate with \`make lock\` after editing requirements.in."; \
	  $(BIN)/pip freeze --exclude-editable; } > requirements.lock

clean:
	rm -rf $(VENV)

bench: setup
	$(BIN)/python -m bench.run

bench-quick: setup
	$(BIN)/python -m bench.run --quick

# One table across DVC and MLflow; EXPS="exp1 exp2" compares DVC experiments instead.
report: setup
	$(BIN)/python -m tools.report $(foreach e,$(EXPS),--exp $(e))
