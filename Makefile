# Entry points: demo, test, lint, bench. Each sets itself up on a fresh Debian 12 as root.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
STAMPS := $(CURDIR)/.cache/stamps
export PEOPLE_COUNTER_CACHE ?= /var/cache/people-counter
export PEOPLE_COUNTER_MODEL_STATE ?= $(PEOPLE_COUNTER_CACHE)/test-state
MODEL_STATE := $(PEOPLE_COUNTER_MODEL_STATE)
PROMTOOL_DIR := $(PEOPLE_COUNTER_CACHE)/promtool
export PEOPLE_COUNTER_PROMTOOL := $(PROMTOOL_DIR)/usr/bin/promtool
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PATH := $(VENV)/bin:$(PATH)

APT_PACKAGES := mosquitto mosquitto-clients sqlite3 chromium fonts-dejavu-core \
	debootstrap systemd-container nftables iproute2 openssh-client rsync

.PHONY: help setup assets lint test test-app test-molecule bench mutation demo demo-down clean

help:
	@echo "make demo   run the appliance on the sample video and print where to look"
	@echo "make test   lint, then every test"
	@echo "make lint   ruff, ansible-lint, yamllint, playbook syntax"
	@echo "make bench  accuracy and cost of each model on the sample video, of a 1080p camera, and across encodings"
	@echo "make mutation  mutation testing of the pure stages (tracker, counter, config, store); not in make test"

$(STAMPS)/apt:
	@mkdir -p $(STAMPS)
	@if [ "$$(id -u)" != 0 ]; then echo "make: run as root (apt-get installs what the targets need)" >&2; exit 1; fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES)
	@touch $@

$(STAMPS)/venv: app/pyproject.toml requirements-dev.txt | $(STAMPS)/apt
	@mkdir -p $(STAMPS)
	[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -e 'app[test,eval,prepare]'
# trackeval requires opencv-python, whose cv2 files overwrite the headless build's and need libGL:
# put the headless build back over them.
	$(PY) -m pip install -q --force-reinstall --no-deps "$$($(PY) -m pip freeze | grep '^opencv-python-headless==')"
	@touch $@

# The sample video, the catalog's models (the default and ssdlite) and the pinned ffmpeg, each
# cached and sha256-checked. Not a stamp: each command is a quick no-op once its cache is valid.
assets: $(STAMPS)/venv
	$(VENV)/bin/people-counter sample
	$(VENV)/bin/people-counter model prepare --state-dir $(MODEL_STATE)
	$(VENV)/bin/people-counter model prepare --state-dir $(MODEL_STATE) --name ssdlite
	$(PY) -m people_counter.prepare.ffmpeg

# promtool (the /metrics test) out of Debian's prometheus package, not installed: that would start a server.
$(PEOPLE_COUNTER_PROMTOOL): | $(STAMPS)/apt
	rm -rf $(PROMTOOL_DIR) && mkdir -p $(PROMTOOL_DIR)
	cd $(PROMTOOL_DIR) && apt-get download -qq prometheus && dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool
	rm -f $(PROMTOOL_DIR)/prometheus_*.deb

setup: assets $(PEOPLE_COUNTER_PROMTOOL)

lint: $(STAMPS)/venv
	$(VENV)/bin/ruff check app molecule playbooks/strategy_plugins roles
	$(VENV)/bin/ruff format --check app molecule playbooks/strategy_plugins roles
	$(VENV)/bin/yamllint --strict .
	$(VENV)/bin/ansible-lint --profile production
	for playbook in playbooks/*.yml; do \
		$(VENV)/bin/ansible-playbook -i inventory/fleet.yml --syntax-check "$$playbook"; \
	done

test-app: setup
	cd app && $(PY) -m pytest -q -ra
	$(PY) -m pytest -q -ra molecule/launcher/tests

# The fleet scenario on systemd-nspawn hosts: create, converge, idempotence, verify (with the
# fault tests), destroy; timings in molecule/.timings. Then the lifecycle scenario (one device:
# upgrade, rollback, removal); timings in molecule/.timings-lifecycle.
test-molecule: setup
	VENV=$(VENV) molecule/test.sh default
	VENV=$(VENV) PC_TIMINGS=molecule/.timings-lifecycle molecule/test.sh lifecycle

test:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint test-app test-molecule; \
	echo "make test: all passed in $$(( $$(date +%s) - start )) s"

bench: setup
	cd app && $(PY) -m bench.counter_bench --json $(CURDIR)/artifacts/bench.json
	cd app && $(PY) -m bench.encoding_spread --state-dir $(MODEL_STATE) --json $(CURDIR)/artifacts/encoding-spread.json
	cd app && $(PY) -m bench.live_bench
	cd app && $(PY) -m bench.fleet_load --devices 1000 --duration-s 60

# mutmut over the pure stages with their unit tests ([tool.mutmut] in app/pyproject.toml), niced:
# more than an hour on 2 cores. Not part of `make test`; the score is in docs/mutation.md.
mutation: $(STAMPS)/venv
	cd app && nice -n 10 $(VENV)/bin/mutmut run --max-children 2
	cd app && $(VENV)/bin/mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json

# One local systemd test host provisioned by playbooks/site.yml: the sample video, the default model.
demo: setup
	VENV=$(VENV) molecule/demo.sh up

demo-down:
	VENV=$(VENV) molecule/demo.sh down

clean:
	rm -rf $(VENV) .cache
