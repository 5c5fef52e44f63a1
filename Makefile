# urunc — build, install, test, demo, benchmark.
#   make                 build release binaries
#   sudo make install    install them into $(PREFIX)/bin
#   sudo make demo       the offline demo under a private containerd
#   sudo make test       fixtures + the whole test suite (needs root, QEMU, containerd)
#   sudo make bench      the benchmarks (see bench/run.sh)

PREFIX ?= /usr/local
CARGO ?= cargo
BINARIES := urunc urunc-pack urunit
# urunit, the init urunc puts into Linux guests, must be a static executable.
HOST_TARGET := $(shell rustc -vV | sed -n 's/^host: //p')
URUNIT := target/urunit/$(HOST_TARGET)/release/urunit

.PHONY: all build urunit install uninstall fixtures test lint demo bench clean

all: build

build: urunit
	$(CARGO) build --release -p urunc-cli -p urunc-pack

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
