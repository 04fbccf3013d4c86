#!/usr/bin/env bash
# Boot the test VM with a set of virtio devices and run cases inside it.
#
#   run.sh [options] [CASE...]      CASE: cases/GROUP/NAME.sh paths or GROUP names (default: all
#                                   but noiommu/, which needs --variant noiommu)
#     --variant NAME   device set: default | packed | mq | transitional | rootports
#                      | noiommu (no vIOMMU, devices without ACCESS_PLATFORM, the
#                      first NIC transitional, a legacy-only NIC, hugepages),
#                      or several joined by commas (packed,mq: packed rings and
#                      a multiqueue NIC in one boot)
#     --backports      boot the bookworm-backports kernel (ublk)
#     --shell          interactive root shell on the serial console (no tests)
#     --mode-script F  run script F in the guest instead of test cases (make demo)
#     --timeout S      whole-run limit in seconds (default 900)
#     --keep           keep the run folder (serial log, QMP socket) for inspection
#     --smp N          virtual CPUs (default 2; TCG runs one host thread per vCPU)
#     --net hub|tap    NIC backend (default tap): two TAPs on a bridge inside a
#                      network namespace made for the run (nothing else on it),
#                      so QEMU offers checksum/TSO offloads; hub: QEMU's own hub
#                      (no offloads)
#
# Results go to stdout; the last line is "N passed, N failed". The exit status
# is non-zero on any failure, on timeout (the serial log's tail is printed),
# or when the guest never reported.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

variant=default image_flags=() shell=0 mode_script="" timeout=900 keep=0 cases=() net=tap smp=2
while [ $# -gt 0 ]; do
    case "$1" in
        --variant) variant=$2; shift 2 ;;
        --backports) image_flags+=(--backports); shift ;;
        --shell) shell=1; shift ;;
        --mode-script) mode_script=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --net) net=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) cases+=("$1"); shift ;;
    esac
done

image=$("$VM_DIR/build-image.sh" "${image_flags[@]}")
run=$(mktemp -d /tmp/virtiod-vm-run.XXXXXX)
qemu_pid=""
steps_pid=""
netns=""
cleanup() {
    [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
    if [ -n "$netns" ]; then sleep 0.5; ip netns del "$netns" 2>/dev/null || true; fi
    [ -n "$steps_pid" ] && kill "$steps_pid" 2>/dev/null || true
    if [ $keep = 1 ]; then log "run folder kept: $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT

# --- payload disk: runner, cases, installed files -----------------------
payload="$run/payload"
mkdir -p "$payload/cases"
cp "$VM_DIR/run-in-guest" "$payload/"
cp -r "$VM_DIR/cases/." "$payload/cases/"
# Default: every group but noiommu/, whose cases need --variant noiommu.
if [ ${#cases[@]} -eq 0 ]; then cases=($(cd "$VM_DIR/cases" && ls -d */ | tr -d / | grep -v '^noiommu$')); fi
: > "$payload/cases.list"
for c in "${cases[@]}"; do
    c=${c#"$VM_DIR/cases/"}; c=${c#cases/}
    if [ -d "$VM_DIR/cases/$c" ]; then
        (cd "$VM_DIR/cases" && ls "$c"/*.sh) >> "$payload/cases.list"
    elif [ -f "$VM_DIR/cases/$c" ]; then
        echo "$c" >> "$payload/cases.list"
    else
        die "no such case or group: $c"
    fi
done
echo "$variant" > "$payload/variant"
if [ ${#image_flags[@]} -gt 0 ]; then echo backports > "$payload/kernel-flavour"; else echo stock > "$payload/kernel-flavour"; fi
[ -n "$mode_script" ] && install -m 755 "$mode_script" "$payload/mode-script"
# The Debian package the guest installs with apt (and, under upgrade/, a newer version of it).
if [ -n "${VIRTIOD_DEBS:-}" ]; then mkdir -p "$payload/debs" && cp -a "$VIRTIOD_DEBS/." "$payload/debs/"; fi
# Other staged installs cases may use (e.g. extra/rng: the example plugin), under /payload/extra.
if [ -n "${VIRTIOD_EXTRA_ROOT:-}" ]; then mkdir -p "$payload/extra" && cp -a "$VIRTIOD_EXTRA_ROOT/." "$payload/extra/"; fi
truncate -s 512M "$run/payload.img"
mkfs.ext4 -q -F -L payload -d "$payload" "$run/payload.img"

# --- devices ---------------------------------------------------------------
truncate -s 64M "$run/blk0.raw"
# Disks the block cases hot-add (device_add virtio-blk-pci,drive=NODE): a
# filesystem disk, a read-only one, one to grow, one for fio.
for d in blkfs:384M blkro:64M blkgrow:64M blkfio:256M; do truncate -s "${d#*:}" "$run/${d%%:*}.raw"; done
mkdir -p "$run/share" "$run/share-kernel" && echo "hello from the host" > "$run/share/hello.txt"
modern="disable-legacy=on,iommu_platform=on"
nic0=""
packed=""
netq=""
memory=1024
# has_variant NAME: whether NAME is one of the comma-separated variants.
has_variant() { case ",$variant," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
for v in ${variant//,/ }; do
    case "$v" in
        default|rootports) ;;
        packed) packed=",packed=on" ;;
        mq) netq=",mq=on,vectors=10" ;;
        # QEMU cannot give a legacy-capable device ACCESS_PLATFORM: transitional
        # devices DMA to guest-physical addresses, which virtiod must refuse.
        transitional) modern="disable-legacy=off" ;;
        # A VM as most clouds give: no IOMMU, devices DMA to guest-physical
        # addresses; the first NIC transitional (modern and legacy interfaces).
        noiommu) modern="disable-legacy=on,iommu_platform=off"; nic0="disable-legacy=off"; memory=1536 ;;
        *) die "unknown variant $v" ;;
    esac
done
# NIC backends. tap: a network namespace of this run's own with a bridge and
# two TAPs, one per NIC; QEMU runs inside it and reaches nothing else.
in_netns=()
case "$net" in
    hub) devices=(-netdev hubport,id=net0,hubid=0 -netdev hubport,id=net1,hubid=0) ;;
    tap)
        netns="virtiod-vm-$$"
        mq=""; qopt=""
        has_variant mq && { mq="multi_queue"; qopt=",queues=4"; }
        ip netns add "$netns" || die "cannot create network namespace $netns (run as root)"
        ip -n "$netns" link add br0 type bridge
        for t in vmtap0 vmtap1; do
            ip -n "$netns" tuntap add dev "$t" mode tap $mq vnet_hdr
            ip -n "$netns" link set "$t" master br0 up
        done
        # vmtap2: a spare 8-queue backend for a NIC hot-added over QMP
        # (netdev_add tap,ifname=vmtap2,queues=8; plugins/many-vectors.sh).
        ip -n "$netns" tuntap add dev vmtap2 mode tap multi_queue vnet_hdr
        ip -n "$netns" link set vmtap2 master br0 up
        ip -n "$netns" link set br0 up
        in_netns=(ip netns exec "$netns")
        devices=(-netdev "tap,id=net0,ifname=vmtap0,script=no,downscript=no$qopt"
                 -netdev "tap,id=net1,ifname=vmtap1,script=no,downscript=no$qopt") ;;
    *) die "unknown --net $net (hub or tap)" ;;
esac
devices+=(
    -drive "file=$run/blk0.raw,if=none,id=blk0,format=raw"
    -blockdev "driver=raw,node-name=blkfs,file.driver=file,file.filename=$run/blkfs.raw,discard=unmap"
    -blockdev "driver=raw,node-name=blkro,read-only=on,file.driver=file,file.filename=$run/blkro.raw"
    -blockdev "driver=raw,node-name=blkgrow,file.driver=file,file.filename=$run/blkgrow.raw"
    -blockdev "driver=raw,node-name=blkfio,file.driver=file,file.filename=$run/blkfio.raw"
    -chardev "socket,id=con0,path=$run/console.sock,server=on,wait=off"
    -chardev "socket,id=port1,path=$run/port1.sock,server=on,wait=off"
    -fsdev "local,id=fs0,path=$run/share,security_model=none"
    -fsdev "local,id=fs1,path=$run/share-kernel,security_model=none"
)
port=0
# A virtio PCI function; with --variant rootports each sits behind its own
# PCIe root port (then FLR and VFIO_DEVICE_RESET work).
pci_device() {
    if has_variant rootports; then
        devices+=(-device "pcie-root-port,id=rp$port,chassis=$((port + 1)),slot=$((port + 1))" -device "$1,bus=rp$port")
        port=$((port + 1))
    else
        devices+=(-device "$1")
    fi
}
pci_device "virtio-net-pci,id=nic0,netdev=net0,mac=52:54:00:12:34:01,${nic0:-$modern}$packed$netq"
pci_device "virtio-net-pci,id=nic1,netdev=net1,mac=52:54:00:12:34:02,$modern$packed$netq"
pci_device "virtio-blk-pci,drive=blk0,serial=virtiod-blk0,$modern$packed"
pci_device "virtio-balloon-pci,id=balloon0,deflate-on-oom=on,$modern$packed"
pci_device "virtio-serial-pci,id=vser0,$modern$packed"
devices+=(-device virtconsole,chardev=con0,name=org.virtiod.console0,bus=vser0.0,id=con0port
          -device virtserialport,chardev=port1,name=org.virtiod.port1,bus=vser0.0,id=port1dev)
pci_device "virtio-9p-pci,fsdev=fs0,mount_tag=virtiod9p,$modern$packed"
# Its twin stays with the kernel's v9fs: the peer 9p/posix.sh and the
# 9p bench compare with.
pci_device "virtio-9p-pci,fsdev=fs1,mount_tag=kernel9p,$modern$packed"
# An entropy device: no plugin of virtiod's own drives it; the out-of-tree
# example (Examples/rng) does, in plugins/out-of-tree-rng.sh.
pci_device "virtio-rng-pci,id=rng0,$modern$packed"
# noiommu: a legacy-only NIC (virtio 0.9.5) on a hub of its own, which
# virtiod refuses (noiommu/legacy.sh).
if has_variant noiommu; then
    devices+=(-netdev hubport,id=net9,hubid=9)
    pci_device "virtio-net-pci,id=nic9,netdev=net9,mac=52:54:00:12:34:09,disable-modern=on"
fi
# Two empty PCIe root ports for devices hot-added over QMP (device_add …,bus=hp0).
devices+=(-device pcie-root-port,id=hp0,chassis=40,slot=40 -device pcie-root-port,id=hp1,chassis=41,slot=41)

iommu=(-device intel-iommu,intremap=on,caching-mode=on)
cmdline="console=ttyS0,115200 root=LABEL=root rw intel_iommu=on loglevel=4 systemd.show_status=0"
if has_variant noiommu; then
    # 96 hugepages (192 MiB) for DMA memory at physical addresses.
    iommu=()
    cmdline="console=ttyS0,115200 root=LABEL=root rw hugepages=96 loglevel=4 systemd.show_status=0"
fi
# In test mode nothing else may own ttyS0: a getty would vhangup() the runner off it.
[ $shell = 1 ] || cmdline="$cmdline virtiod.run systemd.mask=serial-getty@ttyS0.service"
# Root and payload disks on the built-in AHCI; with the backports kernel
# (6.12) on NVMe instead: it crashed QEMU 7.2's AHCI model in 2 of 5 boots
# ("PRDT length for NCQ command (0x0) is smaller than the requested size",
# then an assertion in ide_dma_cb; also with NCQ off).
root_disk=(-device ide-hd,drive=root,bus=ide.0) payload_disk=(-device ide-hd,drive=payload,bus=ide.1)
if [ ${#image_flags[@]} -gt 0 ]; then
    root_disk=(-device nvme,drive=root,serial=vmroot) payload_disk=(-device nvme,drive=payload,serial=vmpayload)
fi
qemu=(qemu-system-x86_64 -nodefaults -no-user-config
    -machine q35,kernel-irqchip=split -accel tcg,thread=multi,tb-size=256 -cpu "${VIRTIOD_VM_CPU:-max}" -smp "$smp" -m "$memory"
    "${iommu[@]}"
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" -append "$cmdline"
    -drive "file=$image/root.img,if=none,id=root,format=raw,snapshot=on" "${root_disk[@]}"
    -drive "file=$run/payload.img,if=none,id=payload,format=raw" "${payload_disk[@]}"
    -qmp "unix:$run/qmp.sock,server=on,wait=off"
    -chardev "socket,id=steps,path=$run/steps.sock,server=on,wait=off"
    "${devices[@]}")

if [ $shell = 1 ]; then
    log "root shell on the serial console; 'poweroff' or Ctrl-A X to leave"
    "${in_netns[@]}" "${qemu[@]}" -display none -serial mon:stdio
    exit 0
fi

# Print the guest's report lines between two serial-log line numbers.
show_results() {
    sed -n "$(($1 + 1)),$2p" "$run/serial.log" | tr -d '\r' | grep -a -E '^(VIRTIOD-TEST (ok|fail) |VIRTIOD-LOG |VIRTIOD-DEMO )' \
        | sed -E 's/^VIRTIOD-(TEST|LOG|DEMO) //' || true
}

export VIRTIOD_VM_RUN=$run VIRTIOD_QMP=$run/qmp.sock
start=$(date +%s)
# ttyS0: results; ttyS1: host-step requests (see host-steps.py).
"${in_netns[@]}" "${qemu[@]}" -display none -serial "file:$run/serial.log" -serial chardev:steps &
qemu_pid=$!
python3 "$VM_DIR/host-steps.py" "$run/steps.sock" "$run/qmp.sock" &
steps_pid=$!
shown=0
finished=0
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ -f "$run/serial.log" ]; then
        lines=$(wc -l < "$run/serial.log")
        if [ "$lines" -gt "$shown" ]; then
            show_results "$shown" "$lines"
            shown=$lines
        fi
    fi
    if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
        log "timeout after $timeout s; serial log tail:"
        tail -n 40 "$run/serial.log" >&2 || true
        echo "0 passed, 1 failed"
        exit 1
    fi
    sleep 0.5
done
qemu_status=0
wait "$qemu_pid" || qemu_status=$?
qemu_pid=""
if [ ! -s "$run/serial.log" ]; then
    log "QEMU exited with status $qemu_status before the guest printed anything"
    echo "0 passed, 1 failed"
    exit 1
fi
lines=$(wc -l < "$run/serial.log")
[ "$lines" -gt "$shown" ] && show_results "$shown" "$lines"
end=$(tr -d '\r' < "$run/serial.log" | grep -a '^VIRTIOD-TEST-END ' | tail -n1 | sed 's/^VIRTIOD-TEST-END //')
log "VM run took $(( $(date +%s) - start )) s"
if [ -z "$end" ]; then
    log "the guest never reported; serial log tail:"
    tail -n 40 "$run/serial.log" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
[ -n "$mode_script" ] && exit 0   # a demo reports nothing to count
# The failures again, last: a log cut to its tail still says which case failed and why.
tr -d '\r' < "$run/serial.log" | grep -a '^VIRTIOD-TEST fail ' | sed 's/^VIRTIOD-TEST fail /failed: /' || true
echo "$end"
[[ $end =~ ^[0-9]+\ passed,\ 0\ failed$ ]]
