# Greenlight: `make run` and `make test` work on a fresh machine with only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Constraints also reach pip's isolated build environment through the variable.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export BENTOML_DO_NOT_TRACK := true

.PHONY: install run test test-unit lint up up-production up-containers down lock clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned dependencies into $(VENV) (first time: ~2 minutes)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/greenlight run $(ARGS)

# Two pytest-xdist workers, each taking whole test modules in the suite's order (a module's fixtures and its order
# stay on one worker; each worker has its own stores): servers starting, stacks waiting and single-threaded imports
# leave a core idle in one process. TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# tests/unit alone, under a minute: no model trained, no MLflow store, no server (tests/unit/conftest.py fails a test
# that does one; it belongs in tests/model or tests/integration).
test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check flows tasks bentos deployments tests benchmarks

up: install
	@$(BIN)/python -m deployments.stack up

# The production shape on one machine: PostgreSQL (Debian's package) for Prefect, MLflow and Optuna, moto's S3
# server for MLflow's artifacts, two workers. Ports: GREENLIGHT_{PREFECT,MLFLOW,POSTGRES,S3}_PORT.
up-production: install
	@$(BIN)/python -m deployments.production up

# `make up`, plus flow runs in containers: the pipeline image built with podman, podman's Docker API, a docker work
# pool and its worker (deployment training_pipeline/containers). Needs podman, runc and debootstrap (Debian's).
up-containers: install
	@$(BIN)/python -m deployments.containers up

# Stops whichever stack `make up`, `make up-production` or `make up-containers` started (containers included).
down:
	@$(BIN)/python -m deployments.stack down

# Re-resolve and re-pin everything (after changing pyproject.toml's dependencies).
lock:
	rm -rf /tmp/greenlight-lock && $(PYTHON) -m venv /tmp/greenlight-lock
	PIP_CONSTRAINT= /tmp/greenlight-lock/bin/pip install -q -e '.[dev]'
	{ echo "# Every package pinned so each install resolves the same; regenerate with 'make lock'."; \
	  echo "# torch is the CPU build from the local wheel (pip finds it via find-links); 2.13.0 exactly."; \
	  /tmp/greenlight-lock/bin/pip freeze --exclude-editable | sed 's/+cpu$$//'; \
	  echo "setuptools==$$(/tmp/greenlight-lock/bin/python -c 'import setuptools; print(setuptools.__version__)')"; } > constraints.txt

clean:
	rm -rf $(VENV) data
