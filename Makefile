# Berth: two commands on a fresh Debian 12 machine.
#   make run   install deps, build, start berthd on config.toml.example, import, push, pull and run busybox
#   make test  install deps, build, run every test (unit, plugin, integration with Debian's ctr)
SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := containerd runc libsqlite3-dev hyperfine libseccomp-dev busybox-static libbtrfsutil-dev btrfs-progs libdevmapper-dev zlib1g-dev libzstd-dev docker-registry skopeo umoci oci-image-tool tmux apache2-utils openssl python3

.PHONY: run test deps build stop bench protos clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

build: deps
	$(SWIFT) build

run: build
	@scripts/run-example.sh "$$($(SWIFT) build --show-bin-path)"

stop:
	@if [ -f /var/tmp/berth-example/berthd.pid ]; then kill $$(cat /var/tmp/berth-example/berthd.pid) && echo "berthd stopped"; fi

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --skip Crash --skip BerthTTRPCTests --skip BerthShimTests
	# ttrpc's timing-sensitive loopback tests and the shim's process tests run on their own: the full parallel run
	# keeps both cooperative-pool threads of this 2-core VM busy for long stretches.
	$(SWIFT) test --skip-build --filter BerthTTRPCTests
	$(SWIFT) test --skip-build --filter BerthShimTests
	# The crash tests kill -9 writers mid-fsync and wait for them to make progress: they run on their own, so the
	# other tests' gigabytes of writes do not stall their fsyncs for minutes on a small VM disk.
	$(SWIFT) test --skip-build --filter Crash

bench: build
	$(SWIFT) build -c release --product berthd
	$(SWIFT) build -c release --product berth
	bench/run.sh

protos:
	scripts/gen-protos.sh

clean:
	rm -rf .build
