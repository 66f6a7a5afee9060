# Two commands matter: `make deploy` converges the inventory's target, `make test` runs everything.
SHELL := /bin/bash
INVENTORY ?= inventory/slices.yaml
VENV ?= .venv
PYTHON ?= python3
PYTEST = $(VENV)/bin/python -m pytest

.PHONY: deploy plan test verify check status unit integration host e2e test-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

check: $(VENV)/.installed
	$(VENV)/bin/sliceops check --inventory $(INVENTORY)

plan: $(VENV)/.installed
	$(VENV)/bin/sliceops plan --inventory $(INVENTORY)

deploy: $(VENV)/.installed
	$(VENV)/bin/sliceops deploy --inventory $(INVENTORY)

verify: $(VENV)/.installed
	$(VENV)/bin/sliceops verify --inventory $(INVENTORY)

status: $(VENV)/.installed
	$(VENV)/bin/sliceops status --inventory $(INVENTORY)

unit: $(VENV)/.installed
	$(PYTEST) tests/unit -q

# The integration and host tests use the services the deploy installs and starts
# (PostgreSQL, the Docker engine), so the suite converges this machine first.
integration: $(VENV)/.installed
	$(PYTEST) tests/integration -q

host: $(VENV)/.installed
	$(PYTEST) tests/host -q

e2e: $(VENV)/.installed
	$(PYTEST) tests/e2e -q

# What the tests themselves need on this machine: a static busybox for the tiny test
# image, debootstrap for the end-to-end host image, chromium to open `sliceops report`'s
# page headless. Installed only when missing.
TEST_DEBS = busybox-static debootstrap chromium
test-deps: $(VENV)/bin/promtool
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# promtool checks monitoring/prometheus/ (tests/unit/test_monitoring_files.py). It comes
# from Debian's prometheus package, unpacked rather than installed: installing it would
# start a Prometheus server on this machine. One static binary, kept in the venv.
$(VENV)/bin/promtool: $(VENV)/.installed
	@tmp=$$(mktemp -d) && chmod 755 $$tmp && cd $$tmp && \
	{ apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; }; } && \
	dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool && \
	install -m 755 usr/bin/promtool $(CURDIR)/$@; status=$$?; rm -rf $$tmp; exit $$status

test: $(VENV)/.installed test-deps
	$(PYTEST) tests/unit -q
	$(VENV)/bin/sliceops deploy --inventory inventory/slices.yaml
	$(PYTEST) tests/integration tests/host -q
	$(VENV)/bin/sliceops verify --inventory inventory/slices.yaml
	$(PYTEST) tests/e2e -q

clean:
	rm -rf $(VENV) .pytest_cache
