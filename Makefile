# xtalweb: `make run` (the demo: gunicorn + a Celery worker, XTALWEB_DEMO=1; scripts/run_demo.sh)
# and `make test` (the test suite, settings xtalweb/settings_test.py) on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REDIS_URL ?= redis://127.0.0.1:6379/0
TEST_DATABASE_URL ?= postgresql://root@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test services browser venv clean-run

$(VENV)/.installed-run: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	$(VENV)/bin/xtal warmup || echo "xtal warmup failed: the numba kernels compile on first use instead"
	touch $@

$(VENV)/.installed-test: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(VENV)/bin/xtal warmup || echo "xtal warmup failed: the numba kernels compile on first use instead"
	touch $@ $(VENV)/.installed-run

venv: $(VENV)/.installed-run

# Start PostgreSQL and Redis if they are installed but stopped.
services:
	@if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start || true; \
	  for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; fi
	@if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then \
	  echo "starting Redis"; \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true; \
	  for i in $$(seq 1 30); do redis-cli ping >/dev/null 2>&1 && break; sleep 1; done; fi

# The whole suite on PostgreSQL; then the tests that run stages through a real Celery
# worker (but for the browser's) once more on SQLite, the zero-setup default of `make run`.
# Debian's Chromium and its driver for the browser tests: installed when missing and we
# are root; otherwise those tests skip and say why.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver"; \
	    (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) || \
	    echo "could not install chromium: the browser tests will skip"; \
	  fi; fi

test: $(VENV)/.installed-test services browser
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(REDIS_URL) $(PY) -m pytest -q
	env -u DATABASE_URL REDIS_URL=$(REDIS_URL) $(PY) -m pytest -q -m "worker and not browser" tests/web

run: $(VENV)/.installed-run services
	./scripts/run_demo.sh
