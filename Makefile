# Entry points: demo, test, lint, bench. Each sets itself up on a fresh Debian 12 as root.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
STAMPS := $(CURDIR)/.cache/stamps
export PEOPLE_COUNTER_CACHE ?= /var/cache/people-counter
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export OPENVINO_TELEMETRY_DISABLE := 1

APT_PACKAGES := mosquitto mosquitto-clients sqlite3 chromium fonts-dejavu-core \
	debootstrap systemd-container nftables iproute2 openssh-client rsync

.PHONY: help setup lint test test-app bench demo demo-down clean

help:
	@echo "make demo   run the appliance on the sample video and print where to look"
	@echo "make test   lint, then every test"
	@echo "make lint   ruff, ansible-lint, yamllint, playbook syntax"
	@echo "make bench  measure throughput, latency and memory on the sample video"

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
	$(PY) -m pip install -q -r requirements-dev.txt -e 'app[test]'
	@touch $@

$(STAMPS)/assets: $(STAMPS)/venv
	$(VENV)/bin/people-counter sample
	$(VENV)/bin/people-counter model prepare --state-dir $(PEOPLE_COUNTER_CACHE)/state
	@touch $@

setup: $(STAMPS)/assets

lint: $(STAMPS)/venv
	$(VENV)/bin/ruff check app molecule
	$(VENV)/bin/ruff format --check app molecule

test-app: setup
	cd app && PEOPLE_COUNTER_MODEL_STATE=$(PEOPLE_COUNTER_CACHE)/state $(PY) -m pytest -q -ra

test: lint test-app

bench: setup
	cd app && PEOPLE_COUNTER_MODEL_STATE=$(PEOPLE_COUNTER_CACHE)/state $(PY) -m people_counter.bench

demo: setup
	$(PY) app/demo_local.py

clean:
	rm -rf $(VENV) .cache
