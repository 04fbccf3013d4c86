# Devices hot-added and removed over QMP appear in and disappear from
# `virtioctl list`; a claimed device that is unplugged is let go (vfio-pci's
# request interrupt); a transitional device without ACCESS_PLATFORM is
# refused with a clear message and left working with its kernel driver —
# unless UnsafeNoIOMMU=yes, which drives it at guest-physical addresses.
source /payload/cases/lib.sh
trap 'stop_virtiod; echo 0 > /proc/sys/vm/nr_hugepages' EXIT
start_virtiod
count() { virtioctl list --json | jq length; }
n0=$(count)
[ "$n0" -eq 8 ] || fail "expected 8 devices before hot-add, saw $n0"
known=$(virtioctl list --json | jq -r '.[].address')

# 1. A modern console hot-added, claimed, then unplugged while claimed.
host_step device_add '{"driver": "virtio-serial-pci", "id": "hot0", "bus": "hp0", "disable-legacy": "on", "iommu_platform": "on"}' >/dev/null \
    || fail "device_add failed"
wait_for "[ \$(virtioctl list --json | jq length) -eq $((n0 + 1)) ]" 60 || fail "hot-added device not listed: $(virtioctl list)"
hot=$(virtioctl list --json | jq -r '.[].address' | grep -vxF "$known")
[ "$(virtioctl status "$hot" --json | jq -r .type)" = console ] || fail "hot-added device type: $(virtioctl status "$hot" --json | jq -r .type)"
virtioctl claim "$hot" >/dev/null || fail "claim of the hot-added device failed"
wait_state "$hot" running 60
host_step device_del '{"id": "hot0"}' >/dev/null || fail "device_del failed"
wait_for "[ \$(virtioctl list --json | jq length) -eq $n0 ]" 90 || fail "unplugged device still listed: $(virtioctl list)"
[ ! -e "/sys/bus/pci/devices/$hot" ] || fail "$hot still in sysfs"

# 2. A transitional console without ACCESS_PLATFORM: refused, nothing changed.
host_step device_add '{"driver": "virtio-serial-pci", "id": "hot1", "bus": "hp1", "disable-legacy": "off", "iommu_platform": "off"}' >/dev/null \
    || fail "device_add (transitional) failed"
wait_for "[ \$(virtioctl list --json | jq length) -eq $((n0 + 1)) ]" 60 || fail "transitional device not listed"
old=$(virtioctl list --json | jq -r '.[].address' | grep -vxF "$known")
rc=0; out=$(virtioctl claim "$old" 2>&1) || rc=$?
[ $rc -eq 6 ] || fail "claim of a device without ACCESS_PLATFORM exited $rc (expected 6): $out"
echo "$out" | grep -q "ACCESS_PLATFORM" || fail "refusal does not say why: $out"
echo "$out" | grep -q "iommu_platform=on" || fail "refusal does not say what to do: $out"
[ "$(vstate "$old")" = refused ] || fail "state $(vstate "$old"), expected refused"
[ "$(driver_of "$old")" = virtio-pci ] || fail "refused device left on $(driver_of "$old")"
wait_for "ls /sys/bus/pci/devices/$old/virtio*/driver" 10 || fail "the kernel's virtio driver did not take the refused device back"
! dmesg | grep -iE "DMAR:.*fault|DMAR: \[DMA" || fail "IOMMU faults logged"
# 3. With UnsafeNoIOMMU=yes the same device is driven at guest-physical
# addresses (it bypasses the IOMMU): DMA memory in hugepages reserved now,
# ACCESS_PLATFORM not negotiated, the plugin running with the device's
# config read; released, it goes back to the kernel.
echo 8 > /proc/sys/vm/nr_hugepages
[ "$(awk '/HugePages_Total/ { print $2 }' /proc/meminfo)" -ge 4 ] || fail "could not reserve hugepages: $(grep HugePages_ /proc/meminfo | tr '\n' ' ')"
printf '[Service]\nUnsafeNoIOMMU=yes\n' > /etc/virtiod/virtiod.conf.d/10-noiommu.conf
reload_virtiod
virtioctl claim "$old" >/dev/null || fail "claim with UnsafeNoIOMMU=yes failed: $(virtioctl status "$old" --json | jq -r .reason)"
wait_state "$old" running 60
s=$(virtioctl status "$old" --json)
echo "$s" | jq -e '.dma == "physical" and (.driver.negotiated.names | index("ACCESS_PLATFORM") | not) and .driver.config.max_nr_ports >= 1' >/dev/null \
    || fail "transitional console with UnsafeNoIOMMU=yes: $(echo "$s" | jq -c '{dma, n: .driver.negotiated.names, c: .driver.config}')"
virtioctl release "$old" >/dev/null || fail "release failed"
wait_for "ls /sys/bus/pci/devices/$old/virtio*/driver" 20 || fail "the kernel's virtio driver did not take the released device back"
rm -f /etc/virtiod/virtiod.conf.d/10-noiommu.conf
echo 0 > /proc/sys/vm/nr_hugepages
! dmesg | grep -iE "DMAR:.*fault|DMAR: \[DMA" || fail "IOMMU faults logged"
host_step device_del '{"id": "hot1"}' >/dev/null || fail "device_del (transitional) failed"
wait_for "[ \$(virtioctl list --json | jq length) -eq $n0 ]" 90 || fail "transitional device still listed after unplug"
