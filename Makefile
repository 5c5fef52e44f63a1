# urunc — build, install, test, demo, benchmark.
#   make                 build release binaries
#   sudo make install    install them into $(PREFIX)/bin
#   sudo make demo       the offline demo under a private containerd
#   sudo make test       fixtures + the whole test suite (needs root, QEMU, containerd)
#   sudo make bench      the benchmarks (see bench/run.sh)

PREFIX ?= /usr/local
CARGO ?= cargo
BINARIES := urunc containerd-shim-urunc-v2 urunc-pack urunit
# urunit, the init urunc puts into Linux guests, must be a static executable.
HOST_TARGET := $(shell rustc -vV | sed -n 's/^host: //p')
URUNIT := target/urunit/$(HOST_TARGET)/release/urunit

.PHONY: all build urunit install uninstall fixtures test lint demo bench clean

all: build

# urunc, the shim and urunc-pack are linked statically: urunc runs once per container
# command (create, start, state, kill, delete), and a static executable starts about
# 0.3 ms sooner than a dynamically linked one (no loader, no relocations of shared
# libraries), which is a tenth of a create+start+delete. Same build as `make dist`.
STATIC_BUILD := RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release \
	--target $(HOST_TARGET) --target-dir target/dist
STATIC_OUT := target/dist/$(HOST_TARGET)/release
STATIC_BINARIES := urunc containerd-shim-urunc-v2 urunc-pack

build: urunit
	$(STATIC_BUILD) -p urunc-cli -p containerd-shim-urunc-v2 -p urunc-pack
	for b in $(STATIC_BINARIES); do install -D -m 0755 $(STATIC_OUT)/$$b target/release/$$b; done

urunit:
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release -p urunit \
		--target $(HOST_TARGET) --target-dir target/urunit
	install -D -m 0755 $(URUNIT) target/release/urunit

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	for b in $(BINARIES); do install -m 0755 target/release/$$b $(DESTDIR)$(PREFIX)/bin/$$b; done

uninstall:
	for b in $(BINARIES); do rm -f $(DESTDIR)$(PREFIX)/bin/$$b; done

# Test guests, cached outside the repository ($$URUNC_FIXTURES, default /var/cache/urunc-fixtures).
fixtures:
	bash fixtures/build-testkernel.sh
	bash fixtures/build-linux-guest.sh

test: fixtures urunit
	URUNC_URUNIT=$(CURDIR)/$(URUNIT) $(CARGO) test --workspace

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

demo:
	bash scripts/demo.sh

bench: build fixtures
	bash bench/run.sh

clean:
	$(CARGO) clean

# Release artefacts: statically linked binaries named by architecture in dist/, as the
# reference's install flow names them (the Kubernetes installer ships exactly these).
# The shim is included when its crate builds. Check them with scripts/check-dist.sh.
DIST_ARCH := $(shell uname -m | sed -e 's/x86_64/amd64/' -e 's/aarch64/arm64/')
DIST_OUT := $(STATIC_OUT)
DIST_BUILD := $(STATIC_BUILD)

.PHONY: dist
dist:
	$(DIST_BUILD) -p urunc-cli -p urunc-pack -p urunit
	install -D -m 0755 $(DIST_OUT)/urunc dist/urunc_static_$(DIST_ARCH)
	install -D -m 0755 $(DIST_OUT)/urunc-pack dist/urunc-pack_static_$(DIST_ARCH)
	install -D -m 0755 $(DIST_OUT)/urunit dist/urunit_static_$(DIST_ARCH)
	$(DIST_BUILD) -p urunc-deploy
	install -D -m 0755 $(DIST_OUT)/urunc-deploy dist/urunc-deploy_static_$(DIST_ARCH)
	if $(DIST_BUILD) -p containerd-shim-urunc-v2; then \
		install -D -m 0755 $(DIST_OUT)/containerd-shim-urunc-v2 \
			dist/containerd-shim-urunc-v2_$(DIST_ARCH); \
	else echo "dist: containerd-shim-urunc-v2 does not build; not included" >&2; fi
