# referee: `make demo` shows it working, `make test` proves it.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PKGS := kamailio kamailio-python3-modules kamailio-sqlite-modules sip-tester debootstrap tcpdump vagrant postgresql chromium chromium-driver logrotate

.PHONY: help deps venv lint unit test demo bench clean lab-up lab-down lab-demo

help:
	@echo "make demo   - run the policy across the example REFER cases"
	@echo "make test   - install what is needed, lint, and run every test"
	@echo "make bench  - policy decision benchmarks (pytest-benchmark)"
	@echo "make lab-up / lab-down - the local Kamailio + Asterisk lab (root; see docs/lab.md)"
	@echo "make integration - the proxy's tests: host Kamailio 5.6 + SIPp on 127.0.1.x (integration-6x: lab rootfs's 6.x)"
	@echo "make existing-6x - referee's drop-in in Debian's stock kamailio.cfg, against the lab rootfs's Kamailio 6.x"
	@echo "make bench-proxy - call mix (stock cfg, + referee drop-in, referee native, referee KEMI) and REFER-only ratios"
	@echo "make fuzz   - the grammar and the policy under atheris, FUZZ_RUNS inputs (1,000,000 by default)"
	@echo "make fuzz-proxy - FUZZ_PROXY_RUNS mutated REFERs (10,000) against a real Kamailio running the proxy"
	@echo "make bench-notify-order - 202 vs NOTIFY order through the proxy, both cores loaded by stress-ng"
	@echo "make bench-lab - transfers under sustained load in the lab (BENCH_LAB_RATE/s for BENCH_LAB_SECONDS; root)"

# A fresh machine has none of the apt packages; install only what is missing.
deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BIN)/referee: pyproject.toml lab/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]' -e ./lab
	@touch $@

venv: $(BIN)/referee

lint: venv
	$(BIN)/ruff check src lab tests ansible/roles
	$(BIN)/ruff format --check src lab tests ansible/roles
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q tests/unit

test: deps venv lint
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory existing-6x

# referee's drop-in in Debian's stock kamailio.cfg, against the Kamailio 6.x of the lab's sid rootfs (`make test`
# runs it after the host's 5.6 run of the same file; see docs/proxy.md, "An existing Kamailio").
.PHONY: existing-6x
existing-6x: deps venv
	REFEREE_KAMAILIO_ROOTFS=$${REFEREE_KAMAILIO_ROOTFS:-/var/cache/referee-lab/rootfs} $(BIN)/pytest -q tests/integration/test_existing_cfg.py

bench: venv
	$(BIN)/pytest -q tests/bench --benchmark-enable --benchmark-columns=min,median,mean,max,ops

demo: deps venv
	$(BIN)/python -m referee.demo
	@$(MAKE) --no-print-directory lab-demo

# The lab (root): build or reuse the sid rootfs, provision it with ansible/site.yml, start Kamailio and both
# Asterisks in the chroot, run every tests/scenarios/ folder, print a result per scenario, tear down.
lab-demo: deps venv
	$(BIN)/python -m referee_lab demo

lab-up: deps venv
	$(BIN)/python -m referee_lab up

lab-down: venv
	$(BIN)/python -m referee_lab down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The Kamailio proxy (ansible/roles/kamailio, referee.kemi): real Kamailio + SIPp on 127.0.1.x. `make test` runs these too.
.PHONY: integration integration-6x bench-proxy
integration: deps venv
	$(BIN)/pytest -q tests/integration

# The same tests against the Kamailio 6.x of the lab's sid rootfs (make lab-up builds it), on a private overlay.
integration-6x: deps venv
	REFEREE_KAMAILIO_ROOTFS=$${REFEREE_KAMAILIO_ROOTFS:-/var/cache/referee-lab/rootfs} $(BIN)/pytest -q tests/integration

# Call mix and REFER only, each configuration 5 times alternating (a few minutes; docs/benchmarks.md).
bench-proxy: deps venv
	flock /tmp/referee-net.lock sh -c '$(BIN)/python tests/bench/call_mix.py && $(BIN)/python tests/bench/proxy_refer_ratio.py'

# The grammar and the policy under atheris for FUZZ_RUNS inputs (not part of `make test`, which runs a smoke of
# the same targets: tests/fuzz/test_fuzz_smoke.py).
.PHONY: fuzz
FUZZ_RUNS ?= 1000000
fuzz: venv
	$(BIN)/pip install -q 'atheris>=2.3'
	$(BIN)/python tests/fuzz/run.py $(FUZZ_RUNS)

# Mutated REFERs (FUZZ_PROXY_RUNS, 10,000 by default) against a real Kamailio running the proxy (127.0.1.x;
# `make test` runs a smoke: tests/integration/test_proxy_fuzz_smoke.py). Takes the network lock.
.PHONY: fuzz-proxy
FUZZ_PROXY_RUNS ?= 10000
fuzz-proxy: deps venv
	flock /tmp/referee-net.lock $(BIN)/python tests/fuzz/refer_proxy.py $(FUZZ_PROXY_RUNS)

# 202 before NOTIFY with both cores loaded by stress-ng (apt-get install stress-ng): the proxy with a PBX
# stand-in (NOTIFY_ORDER=proxy, default) or the lab's attended_transfer 200 times (NOTIFY_ORDER=lab, root).
.PHONY: bench-notify-order
NOTIFY_ORDER ?= proxy
bench-notify-order: deps venv
	flock /tmp/referee-net.lock $(BIN)/python tests/bench/notify_order_load.py $(NOTIFY_ORDER)

# Transfers under sustained load in the lab: BENCH_LAB_RATE per second (half blind, half attended) for
# BENCH_LAB_SECONDS, then a short ladder of lower rates if that one failed (root; see docs/benchmarks.md).
# bench-lab-latency: REFER -> NOTIFY 200 of single attended_transfer and blind_transfer runs.
.PHONY: bench-lab bench-lab-latency
BENCH_LAB_RATE ?= 20
BENCH_LAB_SECONDS ?= 300
bench-lab: deps venv
	flock /tmp/referee-net.lock $(BIN)/python tests/bench/lab_load.py --rate $(BENCH_LAB_RATE) --seconds $(BENCH_LAB_SECONDS)

bench-lab-latency: deps venv
	flock /tmp/referee-net.lock $(BIN)/python tests/bench/lab_attended_latency.py

# FastAGI guard (one round trip) vs process AGI, as a ratio; steady arrivals at 2,000 sessions/s (loopback only).
.PHONY: bench-agi
bench-agi: venv
	$(BIN)/python tests/bench/agi_guard_ratio.py
