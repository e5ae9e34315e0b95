# fastdowntime.postgresql - the two commands a newcomer runs: `make demo`, `make test`.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
# Nothing outside the checkout but the lab: Ansible's home (tmp, ssh control sockets, galaxy
# cache), molecule's and ansible-lint's caches.
export ANSIBLE_HOME := $(CURDIR)/.ansible
export XDG_CACHE_HOME := $(CURDIR)/.cache
export ANSIBLE_FORCE_COLOR ?= 0
INVENTORY ?= inventories/lab/hosts.yml
PYTEST := $(PY) -m pytest -p no:cacheprovider

# (test-core-oldest: the oldest ansible-core declared, in its own venv)
.PHONY: test-core-oldest help venv deps lab lab-down lab-status demo test unit lint sanity integration molecule test-faults bench soak build changelog clean

help:
	@echo "make demo        build the venv and the lab, run the fastdowntime playbook, print the timeline"
	@echo "make test        unit tests, lint + sanity (ansible-core 2.19 and 2.16), integration tests on the lab, molecule test"
	@echo "make test-faults only the fault scenarios on the lab"
	@echo "make bench       the outage benchmark; writes docs/benchmarks.md"
	@echo "make soak        100 deploys in a row, faults drawn at random, in 4 segments of lab shapes (the default"
	@echo "                 shape, then every field shape in 3 combinations: a rebuild and one client load each;"
	@echo "                 SEED=N replays, ITERATIONS=N, SHAPES='a b,c' other segments); writes docs/soak.md and"
	@echo "                 docs/soak.json (other SHAPES: a file under /tmp) (not part of make test)"
	@echo "make lab / lab-down / lab-status   the lab alone (root)"

# Debian packages the venv and the lab need (root on a fresh Debian 12).
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make: the lab needs root (network namespaces, sshd, apt-get): run as root" >&2; exit 1; fi
	missing=""; for p in python3-venv postgresql-15 pgbouncer openssh-server openssh-client iproute2 python3-psycopg2 curl shellcheck git chromium; do
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

# An existing venv (a fresh clone's, or a shared one) is brought up to the requirements, not rebuilt.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	if [ ! -x $(VENV)/bin/python ]; then python3 -m venv $(VENV); $(VENV)/bin/pip install -q --upgrade pip; fi
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

# Ansible finds the collection through ANSIBLE_COLLECTIONS_PATH=.collections: a link to this checkout.
COLLECTION_LINK := .collections/ansible_collections/fastdowntime/postgresql
$(COLLECTION_LINK):
	mkdir -p $(@D) && ln -sfn ../../.. $@

venv: $(VENV)/.installed $(COLLECTION_LINK)

# SHAPE=a,b: a lab shape (lab/labctl.py SHAPES), e.g. make lab SHAPE=cascade
lab: deps venv
	$(PY) lab/labctl.py up $(if $(SHAPE),--shape $(SHAPE))

lab-down:
	$(PY) lab/labctl.py down || python3 lab/labctl.py down

lab-status:
	python3 lab/labctl.py status

# Under the lab's client load: the clients' own view (errors, longest wait) follows the timeline.
demo: lab
	$(PY) lab/demo.py -i $(INVENTORY) playbooks/fastdowntime.yml

# ansible-test units: tests/unit/plugins/<type>/ (module_utils, callback, doc_fragments), collection/,
# roles/, lab/; one test alone: $(PYTEST) tests/unit/plugins/module_utils/test_budget.py
unit: venv
	$(PY) tests/sanity/run_ansible_test.py units --python 3.11 --local

# --offline: lint the checkout through ANSIBLE_COLLECTIONS_PATH instead of installing it
# into ~/.ansible/collections; ANSIBLE_HOME here, so a copy some earlier run left there
# cannot shadow the checkout either.
# ansible-test sanity on a copy of the checkout under ansible_collections/ (offline, this venv, ~2-4 min).
lint: venv
	ANSIBLE_HOME=$(CURDIR)/.ansible ansible-lint --offline --profile production
	$(PY) tests/sanity/run_ansible_test.py sanity --python 3.11 --local
	bash tests/sanity.sh

# The oldest ansible-core meta/runtime.yml declares (2.16): unit tests and ansible-test sanity in
# their own venv (requirements-core216.txt); make lint / make unit run the newest (2.19).
VENV_OLDEST ?= .venv-core216
$(VENV_OLDEST)/.installed: requirements.txt requirements-core216.txt
	if [ ! -x $(VENV_OLDEST)/bin/python ]; then python3 -m venv $(VENV_OLDEST); fi
	$(VENV_OLDEST)/bin/pip install -q -r requirements-core216.txt
	touch $@

test-core-oldest: $(VENV_OLDEST)/.installed $(COLLECTION_LINK)
	PATH=$(CURDIR)/$(VENV_OLDEST)/bin:$$PATH $(VENV_OLDEST)/bin/python tests/sanity/run_ansible_test.py units --python 3.11 --local
	PATH=$(CURDIR)/$(VENV_OLDEST)/bin:$$PATH $(VENV_OLDEST)/bin/python tests/sanity/run_ansible_test.py sanity --python 3.11 --local

integration: lab
	$(PYTEST) -q tests/integration

# Molecule's sequence ends with destroy (the lab down): the lab is brought back to the
# state it was found in, up or down.
molecule: deps venv
	up=0; python3 lab/labctl.py status >/dev/null 2>&1 && up=1
	rc=0; molecule test -s default || rc=$$?
	if [ $$up = 1 ]; then $(PY) lab/labctl.py up; else $(PY) lab/labctl.py down; fi
	exit $$rc

# The machine as found: the lab up or down as it was before.
test:
	up=0; python3 lab/labctl.py status >/dev/null 2>&1 && up=1
	rc=0; $(MAKE) unit lint test-core-oldest integration molecule || rc=$$?
	if [ $$up = 1 ]; then $(PY) lab/labctl.py up; else $(PY) lab/labctl.py down; fi
	exit $$rc

# Every fault scenario on the lab (make test runs them too; this is the quick way to run only them).
test-faults: lab
	$(PYTEST) -q tests/integration -m faults

# RUNS=n runs per method (default 5); the scale growth series to 100 pgbouncers; the size rows beside the
# engine before issue 20 (its raw runs are kept in docs/benchmarks-before-issue-20.md).
bench: lab
	$(PY) benchmarks/outage_bench.py --runs $${RUNS:-5} --scales 2x2,16x4,2x4,8x4,32x4,64x4,100x4 \
	  --baseline docs/benchmarks-before-issue-20.md --baseline-label 'before issue 20 (e760561)'

# Deploys in a row (benchmarks/soak.py), in segments of lab shapes (soak.py SEGMENTS: the default shape and
# every field shape; SHAPES='default cascade,tls' others), one continuous client load per segment; the seed is
# printed.
soak: lab
	$(PY) benchmarks/soak.py --iterations $${ITERATIONS:-100} $(if $(SEED),--seed $(SEED)) $(if $(SHAPES),--shapes $(SHAPES))

build: venv
	mkdir -p build && ansible-galaxy collection build --force --output-path build .

changelog: venv
	antsibull-changelog lint

clean: lab-down
	rm -rf build $(VENV)
