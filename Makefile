# virtiod — front door. `make help` lists the targets.
# Package.swift finds plugins by listing Plugins/: SwiftPM's manifest cache
# (keyed on Package.swift's text) would miss a plugin folder added later.
# Swift from PATH, else where these machines keep it.
SWIFT      ?= $(shell command -v swift || echo /opt/swift/usr/bin/swift)
SWIFTPM    := --manifest-cache none
FUZZ_RUNS  ?= 1000000
FUZZ_BUILD := .build-fuzz
CORPUS     := Tests/FuzzCorpus

.PHONY: help host-setup build release man test unit-test fuzz-replay bench bench-vm fuzz clean install deb test-vm demo vm-shell vm-stage

PREFIX     ?= /usr
DESTDIR    ?=
LIBEXECDIR := $(PREFIX)/libexec/virtiod
# systemd, udev and modprobe folders; the Debian package puts them under
# /lib, where bookworm's debhelper looks (debian/rules).
UNITDIR    ?= $(PREFIX)/lib/systemd/system
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
MODPROBEDIR ?= $(PREFIX)/lib/modprobe.d
# Installs the binaries (stripped). dh_auto_install passes INSTALL="install
# --strip-program=true": dh_strip strips them then, keeping their symbols
# for -dbgsym.
INSTALL    ?= install
MANDIR     := $(PREFIX)/share/man
MAN_BUILD  := .build-man
MANPAGES   := $(patsubst docs/man/%.scd,$(MAN_BUILD)/%,$(wildcard docs/man/*.scd))
RELEASE    := .build-release
# Every folder Plugins/<name>/ with a main.swift is a plugin (virtiod-<name>
# plus its manifest <name>.plugin): nothing here names one.
PLUGINS    := $(sort $(patsubst Plugins/%/main.swift,%,$(wildcard Plugins/*/main.swift)))
MANIFESTDIR := $(PREFIX)/lib/virtiod/plugins
VM_FLAGS   ?=

help:
	@echo "make build        debug build of everything"
	@echo "make test         everything the project has: unit tests, fuzz corpus replay, the Debian package, the VM suite"
	@echo "make deb          virtiod_VERSION_amd64.deb (+ -dbgsym) in .build-deb/, checked by lintian"
	@echo "make host-setup   install the Debian packages building and testing need (root; the targets below run it)"
	@echo "make bench        release build, prints virtqueue round trips/s (split vs packed, batch 1 and 32)"
	@echo "make bench-vm     in the test VM: TCP throughput and ping RTT vs virtio_net, fio IOPS and MB/s vs virtio_blk, 9p MB/s and ops/s vs v9fs"
	@echo "make fuzz         libFuzzer on every fuzz target (rings, config, control, hand-over, netlink, PCI caps, plugins), FUZZ_RUNS=$(FUZZ_RUNS) each"
	@echo "make install      static release binaries and units into DESTDIR (default /)"
	@echo "make test-vm      boot the QEMU test VM and run the in-guest suite (VM_FLAGS=--variant packed …)"
	@echo "make demo         boot the VM and show what virtiod sees, then power off"
	@echo "make vm-shell     root shell on the test VM's serial console"
	@echo "make clean        remove build folders"

# Everything beyond Swift and git comes from apt, installed on first use.
host-setup:
	scripts/setup-host

build: host-setup
	$(SWIFT) build $(SWIFTPM)

test: host-setup unit-test fuzz-replay test-vm

unit-test: host-setup
	$(SWIFT) test $(SWIFTPM)

# Fuzz targets: the ring parsers (virtio-ring-fuzz), the supervisor's parsers
# (virtiod-fuzz, one target per folder of Tests/FuzzCorpus), and each
# plugin's own (Plugins/<name>/Fuzz/: the plugin built with -DFUZZING is its
# fuzzer; its corpus Fuzz/Corpus is replayed by the plugin's tests).
FUZZ_TARGETS := ini control handover netlink pcicaps
PLUGIN_FUZZ  := $(sort $(patsubst Plugins/%/Fuzz,%,$(wildcard Plugins/*/Fuzz)))

# Replays the committed fuzz corpora through the same code with a normal build:
# inputs that once found something stay tests.
fuzz-replay:
	$(SWIFT) build $(SWIFTPM) --product virtio-ring-fuzz
	$(SWIFT) build $(SWIFTPM) --product virtiod-fuzz
	bin=$$($(SWIFT) build $(SWIFTPM) --show-bin-path); \
	$$bin/virtio-ring-fuzz $(CORPUS)/ring && \
	$$bin/virtiod-fuzz $(addprefix $(CORPUS)/,$(FUZZ_TARGETS))

bench:
	$(SWIFT) build $(SWIFTPM) -c release --product virtio-ring-bench
	$$($(SWIFT) build $(SWIFTPM) -c release --show-bin-path)/virtio-ring-bench

# Each target FUZZ_RUNS times under libFuzzer + ASan; new inputs land in
# $(FUZZ_BUILD)/corpus/<target> (copy the interesting ones into the corpora). lld links
# them: gold stops with an internal error on these ASan objects.
FUZZ_FLAGS := -c release --scratch-path $(FUZZ_BUILD) -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -use-ld=lld
fuzz:
	$(SWIFT) build $(SWIFTPM) $(FUZZ_FLAGS) --product virtio-ring-fuzz
	$(SWIFT) build $(SWIFTPM) $(FUZZ_FLAGS) --product virtiod-fuzz
	for p in $(PLUGIN_FUZZ); do $(SWIFT) build $(SWIFTPM) $(FUZZ_FLAGS) --product virtiod-$$p || exit 1; done
	mkdir -p $(FUZZ_BUILD)/corpus/ring
	$(FUZZ_BUILD)/release/virtio-ring-fuzz -runs=$(FUZZ_RUNS) -max_len=512 -print_final_stats=1 \
		$(FUZZ_BUILD)/corpus/ring $(CORPUS)/ring
	for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_BUILD)/corpus/$$t && echo "== fuzz $$t" && \
		VIRTIOD_FUZZ_TARGET=$$t $(FUZZ_BUILD)/release/virtiod-fuzz -runs=$(FUZZ_RUNS) -max_len=4096 -print_final_stats=1 \
			$(FUZZ_BUILD)/corpus/$$t $(CORPUS)/$$t || exit 1; \
	done
	for p in $(PLUGIN_FUZZ); do \
		mkdir -p $(FUZZ_BUILD)/corpus/$$p && echo "== fuzz plugin $$p" && \
		$(FUZZ_BUILD)/release/virtiod-$$p -runs=$(FUZZ_RUNS) -max_len=512 -print_final_stats=1 \
			$(FUZZ_BUILD)/corpus/$$p Plugins/$$p/Fuzz/Corpus || exit 1; \
	done

# Release binaries with the Swift runtime linked in: they need only glibc and
# libstdc++, so they run on a machine (or guest) without Swift.
# RESOLVED=no builds from the dependencies already fetched (the package build
# does: `make deb` fetches first, then builds offline).
RESOLVED   ?= yes
RELEASE_FLAGS := -c release --static-swift-stdlib -Xlinker -z -Xlinker now --scratch-path $(RELEASE) $(if $(filter no,$(RESOLVED)),--disable-automatic-resolution)
release:
	$(SWIFT) build $(SWIFTPM) $(RELEASE_FLAGS)

# Man pages: scdoc sources in docs/man/, roff in $(MAN_BUILD)/.
man: $(MANPAGES)
$(MAN_BUILD)/%: docs/man/%.scd
	@mkdir -p $(MAN_BUILD)
	scdoc < $< > $@

install: host-setup release man
	install -d $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(PREFIX)/bin
	$(INSTALL) -m 755 -s $(RELEASE)/release/virtiod $(RELEASE)/release/virtioctl $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(MANIFESTDIR) $(DESTDIR)/etc/virtiod/plugins
	for p in $(PLUGINS); do \
		$(INSTALL) -m 755 -s $(RELEASE)/release/virtiod-$$p $(DESTDIR)$(LIBEXECDIR)/ || exit 1; \
		sed 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' Plugins/$$p/$$p.plugin > $(DESTDIR)$(MANIFESTDIR)/$$p.plugin || exit 1; \
		chmod 644 $(DESTDIR)$(MANIFESTDIR)/$$p.plugin; \
	done
	$(INSTALL) -m 755 -s $(RELEASE)/release/virtio-ring-bench $(DESTDIR)$(LIBEXECDIR)/virtio-ring-bench
	install -d $(DESTDIR)$(UNITDIR) && install -m 644 Units/*.service Units/*.slice Units/*.timer $(DESTDIR)$(UNITDIR)/
	install -d $(DESTDIR)$(PREFIX)/lib/sysusers.d && install -m 644 Units/virtiod.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/virtiod.conf
	install -d $(DESTDIR)$(UDEVRULESDIR) && install -m 644 Units/*.rules $(DESTDIR)$(UDEVRULESDIR)/
	install -d $(DESTDIR)$(MODPROBEDIR) && install -m 644 Units/virtiod.modprobe $(DESTDIR)$(MODPROBEDIR)/virtiod.conf
	install -d $(DESTDIR)/etc/virtiod/virtiod.conf.d
	# An existing configuration is the admin's: never overwrite it.
	[ -e $(DESTDIR)/etc/virtiod/virtiod.conf ] || install -m 644 Units/virtiod.conf $(DESTDIR)/etc/virtiod/virtiod.conf
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions \
		$(DESTDIR)$(PREFIX)/share/doc/virtiod
	$(RELEASE)/release/virtioctl --generate-completion-script bash | sed "1{/^#!/d}" > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/virtioctl
	$(RELEASE)/release/virtioctl --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_virtioctl
	install -m 644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/virtiod/
	install -d $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 644 $(filter %.5,$(MANPAGES)) $(DESTDIR)$(MANDIR)/man5/
	install -m 644 $(filter %.8,$(MANPAGES)) $(DESTDIR)$(MANDIR)/man8/

# The Debian package (debian/), built in place from dependencies fetched
# beforehand: the build itself needs no network. Result and lintian's
# report in $(DEB_OUT)/; lintian errors fail the target.
DEB_OUT    := .build-deb
deb: host-setup
	$(SWIFT) package $(SWIFTPM) --scratch-path $(RELEASE) resolve
	rm -rf $(DEB_OUT) && mkdir -p $(DEB_OUT)
	v=$$(dpkg-parsechangelog -S Version) && dpkg-buildpackage -b -us -uc --no-pre-clean \
		--buildinfo-option=-u$(DEB_OUT) --changes-option=-u$(DEB_OUT) \
		--buildinfo-file=$(DEB_OUT)/virtiod_$${v}_amd64.buildinfo --changes-file=$(DEB_OUT)/virtiod_$${v}_amd64.changes
	status=0; lintian --fail-on error --info $(DEB_OUT)/virtiod_*.deb $(DEB_OUT)/virtiod-dbgsym_*.deb \
		> $(DEB_OUT)/lintian.txt 2>&1 || status=$$?; cat $(DEB_OUT)/lintian.txt; exit $$status

# The VM suite installs the Debian package as users do (`apt install
# ./virtiod_….deb` in the guest). package-upgrade.sh also gets a newer
# version of it: the same build repacked with a higher version number.
VM_STAGE := .build-vm-debs
# The whole suite on the default devices, then the device-facing cases again
# in one second boot: packed rings, a multiqueue NIC and no IOMMU (devices
# without ACCESS_PLATFORM, lent through uio_pci_generic, DMA in hugepages at
# physical addresses). noiommu/net.sh and noiommu/reload.sh run the net
# traffic, offload and reload cases there (VM_VARIANTS= to skip).
VM_VARIANTS ?= packed,mq,noiommu
VM_VARIANT_CASES := noiommu net/control.sh supervisor/claim-all.sh block/filesystem.sh block/mq.sh
# A third boot on the bookworm-backports kernel, which has ublk_drv: the
# block cases again, the disk exported as /dev/ublkbN (VM_KERNELS= to skip).
VM_KERNELS ?= backports
VM_KERNEL_CASES := harness/kernel-flavour.sh block/filesystem.sh block/fio-verify-reload.sh block/readonly-resize.sh block/mq.sh
# Out-of-tree plugins the cases install in the guest, built the documented
# way (their own package, `make install PREFIX=/usr/local`), staged per example.
VM_EXTRA := .build-vm-extra
EXAMPLES := rng
# Fault injection exists only in test builds (-DVIRTIOD_FAULTS): a net plugin
# built so, for cases that play a misbehaving plugin, staged as extra/faults.
FAULTS_BUILD := .build-faults
# promtool (from Debian's prometheus package, unpacked, not installed: no
# server starts) checks `virtioctl metrics` in ecosystem/metrics.sh.
PROMTOOL := .build-tools/promtool
$(PROMTOOL):
	scripts/fetch-promtool $@
vm-stage: deb $(PROMTOOL)
	rm -rf $(VM_STAGE) && mkdir -p $(VM_STAGE)/upgrade
	cp $(DEB_OUT)/virtiod_*_amd64.deb $(VM_STAGE)/
	scripts/repack-deb $(DEB_OUT)/virtiod_*_amd64.deb +upgrade1 $(VM_STAGE)/upgrade
	rm -rf $(VM_EXTRA) && for e in $(EXAMPLES); do \
		$(MAKE) -C Examples/$$e install DESTDIR=$(CURDIR)/$(VM_EXTRA)/$$e PREFIX=/usr/local || exit 1; done
	$(SWIFT) build $(SWIFTPM) --product virtiod-net -Xswiftc -DVIRTIOD_FAULTS --static-swift-stdlib --scratch-path $(FAULTS_BUILD)
	install -D -m 755 $(FAULTS_BUILD)/debug/virtiod-net $(VM_EXTRA)/faults/usr/local/lib/virtiod-test/virtiod-net-faults
	install -D -m 755 $(PROMTOOL) $(VM_EXTRA)/tools/promtool
VM_ENV = VIRTIOD_DEBS=$(CURDIR)/$(VM_STAGE) VIRTIOD_EXTRA_ROOT=$(CURDIR)/$(VM_EXTRA)
# The default suite's limit guards against a hung guest; its measured time
# (README, "The test VM") is well below, but was 1714 s once on a slow evening.
test-vm: vm-stage
	$(VM_ENV) Tests/VM/run.sh --timeout 2700 $(VM_FLAGS)
	for v in $(VM_VARIANTS); do \
		echo "== variant $$v: $(VM_VARIANT_CASES)"; \
		$(VM_ENV) Tests/VM/run.sh --variant $$v $(VM_VARIANT_CASES) || exit 1; \
	done
	for k in $(VM_KERNELS); do \
		echo "== kernel $$k: $(VM_KERNEL_CASES)"; \
		$(VM_ENV) Tests/VM/run.sh --$$k $(VM_KERNEL_CASES) || exit 1; \
	done

demo: host-setup deb
	rm -rf $(VM_STAGE) && mkdir -p $(VM_STAGE) && cp $(DEB_OUT)/virtiod_*_amd64.deb $(VM_STAGE)/
	VIRTIOD_DEBS=$(CURDIR)/$(VM_STAGE) Tests/VM/run.sh --mode-script Tests/VM/demo.sh $(VM_FLAGS)

# One run per vCPU count: a userspace driver needs a CPU of its own to shine.
BENCH_SMP ?= 1 2
bench-vm: host-setup deb
	rm -rf $(VM_STAGE) && mkdir -p $(VM_STAGE) && cp $(DEB_OUT)/virtiod_*_amd64.deb $(VM_STAGE)/
	for n in $(BENCH_SMP); do \
		VIRTIOD_DEBS=$(CURDIR)/$(VM_STAGE) Tests/VM/run.sh --smp $$n --mode-script Tests/VM/bench-net.sh $(VM_FLAGS) || exit 1; \
	done
	VIRTIOD_DEBS=$(CURDIR)/$(VM_STAGE) Tests/VM/run.sh --mode-script Tests/VM/bench-block.sh $(VM_FLAGS)
	VIRTIOD_DEBS=$(CURDIR)/$(VM_STAGE) Tests/VM/run.sh --backports --mode-script Tests/VM/bench-block.sh $(VM_FLAGS)
	VIRTIOD_DEBS=$(CURDIR)/$(VM_STAGE) Tests/VM/run.sh --mode-script Tests/VM/bench-9p.sh $(VM_FLAGS)

vm-shell: vm-stage
	$(VM_ENV) Tests/VM/run.sh --shell $(VM_FLAGS)

clean:
	rm -rf .build .build-tools $(FUZZ_BUILD) $(RELEASE) $(VM_STAGE) $(VM_EXTRA) $(FAULTS_BUILD) $(DEB_OUT) $(MAN_BUILD)
	rm -rf debian/virtiod debian/.debhelper debian/files debian/*.substvars debian/debhelper-build-stamp debian/*.debhelper.log
	for e in $(EXAMPLES); do $(MAKE) -C Examples/$$e clean; done
