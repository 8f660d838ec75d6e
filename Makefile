# Postbox: `make run` serves the form, `make test` runs every test, `make bench` measures.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test bench translations chromium office axe bench-tools deploy-tools redis postgresql clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

translations: $(VENV)/.runtime
	@set -e; for lang in ru it hy hi; do \
	  po=translations/$$lang/LC_MESSAGES/messages.po; mo=translations/$$lang/LC_MESSAGES/messages.mo; \
	  test -f "$$po" || { echo "make translations: $$po is missing" >&2; exit 1; }; \
	  rm -f "$$mo"; \
	  $(BIN)/python -c 'import sys; from babel.messages.pofile import read_po; read_po(open(sys.argv[1], "rb"), abort_invalid=True)' "$$po" \
	    || { echo "make translations: $$po cannot be parsed (see above)" >&2; exit 1; }; \
	  if command -v msgfmt >/dev/null; then msgfmt --check -o /dev/null "$$po" \
	    || { echo "make translations: msgfmt --check rejects $$po" >&2; exit 1; }; fi; \
	  $(BIN)/pybabel compile -d translations -l $$lang --statistics \
	    || { echo "make translations: $$po has errors (see above)" >&2; exit 1; }; \
	  test -s "$$mo" || { echo "make translations: $$mo was not built (is the whole catalog marked fuzzy?)" >&2; exit 1; }; \
	done

run: $(VENV)/.runtime translations
	$(BIN)/flask --app app init-db
	PORT=$(PORT) exec $(BIN)/gunicorn -c gunicorn.conf.py "app:create_app()"

# Browser tests use Debian's Chromium, and Noto fonts so Armenian and Devanagari screenshots show real letters.
chromium:
	@command -v chromium >/dev/null && dpkg -s fonts-noto-core >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-noto-core; }

# The export test opens the CSV in LibreOffice Calc, as the owner would.
office:
	@command -v soffice >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q libreoffice-calc-nogui; }

# The accessibility tests inject axe-core (from npm, pinned) into Chromium; installed into a git-ignored folder.
AXE_VERSION := 4.14.1
AXE := .cache/axe/node_modules/axe-core/axe.min.js
axe:
	@grep -qs '"version": "$(AXE_VERSION)"' .cache/axe/node_modules/axe-core/package.json || \
	  { command -v npm >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm; }; \
	    npm install --prefix .cache/axe --no-save --no-audit --no-fund axe-core@$(AXE_VERSION); }

# The load generator and the reference CSV exporter of `make bench`.
bench-tools:
	@command -v wrk >/dev/null && command -v sqlite3 >/dev/null || \
	  { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk sqlite3; }

# The deployment tests verify deploy/postbox.service with systemd-analyze and build the Dockerfile's tree with
# Debian's python3 (the image's Python), which needs its venv module.
deploy-tools:
	@command -v systemd-analyze >/dev/null && /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || \
	  { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd python3-venv; }

# The tests start their own Redis and PostgreSQL servers (Debian's) on loopback ports, in temporary folders.
redis:
	@test -x /usr/bin/redis-server || \
	  { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; }

postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

test: $(VENV)/.dev translations chromium office axe deploy-tools redis postgresql
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.dev translations bench-tools
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts .cache/axe
