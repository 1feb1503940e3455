# Two commands on a fresh clone:  `make run` (set up, run the main job)  and  `make test` (set up, run the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CATALOG ?= ../shared/datasets/myntra
OUT    ?= runs/myntra
ARGS   ?=

.PHONY: run test setup browser bench clean

$(BIN)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, from this machine's disk (see README): never a newer release
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c requirements.lock -e ".[test]"
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/pinlanding run --catalog $(CATALOG) --out $(OUT) $(ARGS)

# Debian's chromium for the headless-browser tests (installed only where it is missing and we may install it)
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium missing: browser tests will be skipped"; }

test: setup browser
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/pytest $(ARGS)

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
