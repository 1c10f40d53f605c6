# The README's commands. Each target creates the environment from the lock
# file first (once; again when requirements.lock or pyproject.toml change).
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stages call `python`: put the project's environment first on PATH.
RUN := PATH="$(BIN):$$PATH" TF_CPP_MIN_LOG_LEVEL=2
UI_PORT ?= 5000
SERVE_PORT ?= 5002
SERVE_MODEL ?= models:/captcha-ocr@champion

.DEFAULT_GOAL := help
.PHONY: help venv repro test test-fast lint format ui serve plots compare read lock clean system-tools \
	stack-up stack-env stack-down

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed  ## create .venv from requirements.lock

repro: venv  ## run the pipeline (dvc repro) on params.yaml, then print where to look
	@test -d .git || { echo "make repro needs a git checkout (DVC tracks it)"; exit 1; }
	$(RUN) $(BIN)/dvc repro
	@$(RUN) $(BIN)/python -m captcha_ocr.summary

test: venv system-tools  ## run the whole test suite
	$(RUN) $(BIN)/pytest

test-fast: venv  ## the tests not marked integration: the edit loop (make test before a commit)
	$(RUN) $(BIN)/pytest -m "not integration"

# The two-host tests make network namespaces with iproute2's `ip`: installed as root
# where it is missing (a bare Debian image); elsewhere those tests say they need it.
system-tools:
	@command -v ip >/dev/null || test "$$(id -u)" != 0 || \
		{ apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; }

lint: venv  ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv  ## ruff: fix what can be fixed, format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ui: venv  ## MLflow UI on http://127.0.0.1:$(UI_PORT) over the project's store
	$(RUN) $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--host 127.0.0.1 --port $(UI_PORT) --workers 1

serve: venv  ## serve a registered reader (SERVE_MODEL=models:/captcha-ocr@champion) on 127.0.0.1:$(SERVE_PORT)
	$(RUN) MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlruns/mlflow.db}" \
		$(BIN)/mlflow models serve --model-uri "$(SERVE_MODEL)" --env-manager local \
		--host 127.0.0.1 --port $(SERVE_PORT)

plots: venv  ## dvc plots show -> dvc_plots/index.html, rendered offline (vega inlined)
	$(RUN) $(BIN)/python -m captcha_ocr.plot_template .dvc/plots/offline.html
	$(RUN) $(BIN)/dvc plots show --html-template .dvc/plots/offline.html

compare: venv  ## the MLflow runs of the experiment, best first (ARGS="--markdown")
	@$(RUN) $(BIN)/python -m captcha_ocr.compare $(ARGS)

read: venv  ## read captcha images with the trained model (IMAGES="a.png folder/")
	@test -n "$(IMAGES)" || { echo 'usage: make read IMAGES="captcha.png folder/"'; exit 2; }
	@$(RUN) $(BIN)/python -m captcha_ocr.read $(IMAGES) $(ARGS)

stack-up: venv  ## start a team stack on 127.0.0.1 (PostgreSQL, S3, mlflow server) in .stack/
	@$(RUN) $(BIN)/python -m captcha_ocr.stack up --dir .stack >/dev/null
	@echo 'point this shell at it: eval "$$(make -s stack-env)"'

stack-env: venv  ## print the exports that point the pipeline and DVC at the stack
	@$(RUN) $(BIN)/python -m captcha_ocr.stack env --dir .stack

stack-down: venv  ## stop the stack (its data stays in .stack/)
	@$(RUN) $(BIN)/python -m captcha_ocr.stack down --dir .stack

lock: venv  ## re-resolve requirements.lock from pyproject.toml
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links -o requirements.lock pyproject.toml

clean:  ## remove the environment and the pipeline's outputs (not the MLflow store)
	rm -rf $(VENV) data models metrics plots dvc_plots
