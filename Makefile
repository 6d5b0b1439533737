# Two entry points: `make demo` (set up + run the demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1:8000

.PHONY: setup totalseg frontend demo demo-data test test-sqlite test-postgres lint bench bench-analysis bench-viewer bench-load bench-scale clean-demo

# The demo and the tests run with DEBUG=1 (settings default to off and then require SECRET_KEY and DEID_SALT).
demo-data demo test test-sqlite test-postgres lint: export DEBUG ?= 1

# torch first, pinned: that takes the local CPU wheel (an unpinned torch pulls multi-GB CUDA builds).
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# TotalSegmentator in its own venv (run in a subprocess by inference.pipeline.segment), torch kept on the CPU build.
TS_VENV := .venv-totalseg
$(TS_VENV)/.installed: requirements-totalseg.txt constraints-totalseg.txt
	$(PYTHON) -m venv $(TS_VENV)
	$(TS_VENV)/bin/pip install --quiet --upgrade pip
	$(TS_VENV)/bin/pip install --quiet torch==2.13.0
	$(TS_VENV)/bin/pip install --quiet -r requirements-totalseg.txt -c constraints-totalseg.txt
	touch $@

totalseg: $(TS_VENV)/.installed

# The viewer bundle (Cornerstone3D + Vite): rebuilt when its sources or lock file change.
VITE_MANIFEST := frontend/dist/.vite/manifest.json
$(VITE_MANIFEST): frontend/package.json frontend/package-lock.json $(wildcard frontend/vite.config.*) $(shell find frontend/src -type f 2>/dev/null)
	cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build

frontend: $(VITE_MANIFEST)

setup: $(VENV)/.installed $(VITE_MANIFEST)

demo-data: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo

demo: demo-data
	$(PY) manage.py runserver --nostatic $(HOST)

# SQLite always; PostgreSQL as well when DATABASE_URL is set or the local server answers.
test: setup totalseg
	./scripts/run-tests

test-sqlite: setup
	env -u DATABASE_URL $(VENV)/bin/pytest

test-postgres: setup
	DATABASE_URL=$(PG_URL) $(VENV)/bin/pytest

# ruff check (with the complexity limit and the pure cores' banned imports), ruff format, the type checker, ESLint.
lint: setup
	cd frontend && npx --no-install eslint .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=1 $(VENV)/bin/mypy

clean-demo:
	rm -rf db.sqlite3 fixtures/demo

bench-analysis: setup
	$(PY) -m bench.analysis
	$(PY) -m bench.analysis.power

bench-viewer: setup
	$(PY) -m bench.viewer

bench-load: setup
	$(PY) -m bench.load
	$(PY) -m bench.load --fault

bench-scale: setup
	$(PY) -m bench.scale

bench: bench-analysis bench-viewer bench-load bench-scale
