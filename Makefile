# gureum — `make help` lists the targets.
GO       ?= go
BIN      := bin
GOFLAGS  ?=
export GOFLAGS

.PHONY: help build test check bench e2e e2e-nested image clean guest run

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# gureum-vmm is linked statically (no cgo): one process per VM, and without
# libc and the dynamic loader mapped it keeps ~1.5 MiB less resident.
build: guest ## build bin/gureum, bin/gureum-vmm and bin/testguest.elf
	$(GO) build -o $(BIN)/gureum ./cmd/gureum
	CGO_ENABLED=0 $(GO) build -o $(BIN)/gureum-vmm ./cmd/gureum-vmm

run: build ## as root: start the gureum daemon (default image, /var/lib/gureum) and launch a first instance
	@BIN=$(BIN) sh cmd/first-run.sh

guest: ## build the test guest (bin/testguest.elf) with the machine's gcc
	$(MAKE) -C images/testguest OUT=$(abspath $(BIN))/testguest.elf

test: build ## run unit, KVM and end-to-end tests (KVM/root tests skip without them unless GUREUM_REQUIRE_KVM=1)
	GUREUM_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout 20m ./...

e2e: build ## run only the end-to-end tests (real binaries, real guests)
	GUREUM_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout 20m -run 'E2E' ./...

e2e-nested: build ## run the stock-Linux guest tests inside a nested test host (QEMU TCG with emulated SVM)
	GUREUM_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout 30m -v -run TestNestedLinuxGuests ./images/nested

image: build ## build the default Debian guest image (kernel, initramfs, root disk) into bin/images
	$(BIN)/gureum image build --cache $(abspath $(BIN))/images

bench: build ## compare gureum-vmm with QEMU microvm and gokvm (writes bench/results/), then time EBS snapshots
	GUREUM_BIN=$(abspath $(BIN)) $(GO) run ./bench
	$(GO) test -run XXX -bench CreateSnapshot -benchtime 20x ./storage/volume/

check: ## gofmt, go vet, staticcheck, go mod tidy diff
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./...
	@tmp=$$(mktemp -d); cp go.mod go.sum $$tmp/; $(GO) mod tidy; \
	if ! cmp -s go.mod $$tmp/go.mod || ! cmp -s go.sum $$tmp/go.sum; then \
		echo "go mod tidy would change go.mod/go.sum:"; diff -u $$tmp/go.mod go.mod; diff -u $$tmp/go.sum go.sum; \
		cp $$tmp/go.mod $$tmp/go.sum .; rm -rf $$tmp; exit 1; fi; rm -rf $$tmp

clean: ## remove build outputs
	rm -rf $(BIN)
	$(MAKE) -C images/testguest clean OUT=$(abspath $(BIN))/testguest.elf
