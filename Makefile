# virtiod — front door. `make help` lists the targets.
SWIFT      ?= swift
FUZZ_RUNS  ?= 1000000
FUZZ_BUILD := .build-fuzz
CORPUS     := Tests/FuzzCorpus

.PHONY: help build test unit-test fuzz-replay bench fuzz clean

help:
	@echo "make build        debug build of everything"
	@echo "make test         everything the project has: unit tests (swift test) + fuzz corpus replay"
	@echo "make bench        release build, prints virtqueue round trips/s (split vs packed, batch 1 and 32)"
	@echo "make fuzz         libFuzzer on the ring parsers, FUZZ_RUNS=$(FUZZ_RUNS) iterations"
	@echo "make clean        remove build folders"

build:
	$(SWIFT) build

test: unit-test fuzz-replay

unit-test:
	$(SWIFT) test

# Replays the committed fuzz corpus through the same code with a normal build:
# inputs that once found something stay tests.
fuzz-replay:
	$(SWIFT) build --product virtio-ring-fuzz
	$$($(SWIFT) build --show-bin-path)/virtio-ring-fuzz $(CORPUS)

bench:
	$(SWIFT) build -c release --product virtio-ring-bench
	$$($(SWIFT) build -c release --show-bin-path)/virtio-ring-bench

fuzz:
	$(SWIFT) build -c release --product virtio-ring-fuzz --scratch-path $(FUZZ_BUILD) \
		-Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
	mkdir -p $(FUZZ_BUILD)/corpus
	$(FUZZ_BUILD)/release/virtio-ring-fuzz -runs=$(FUZZ_RUNS) -max_len=512 -print_final_stats=1 \
		$(FUZZ_BUILD)/corpus $(CORPUS)

clean:
	rm -rf .build $(FUZZ_BUILD)
