# A legacy-only NIC (virtio 0.9.5: QEMU's disable-modern=on) on a VM without
# an IOMMU is refused, with a reason that says what it is and what to do;
# it stays with the kernel's virtio-pci. (virtiod drives modern and
# transitional devices; a transitional NIC passes traffic in noiommu/net.sh.)
# Then, without UnsafeNoIOMMU=yes, a modern NIC in no IOMMU group is refused
# with a reason that names the setting.
source /payload/cases/lib.sh
has_variant noiommu || fail "noiommu/legacy.sh needs --variant noiommu"
trap stop_virtiod EXIT
legacy=$(nic_function 52:54:00:12:34:09)
[ -n "$legacy" ] || fail "no kernel-driven NIC with the legacy NIC's MAC 52:54:00:12:34:09"
start_virtiod "[Device]
Address=$legacy
Claim=yes"
wait_state "$legacy" refused 60
reason=$(virtioctl status "$legacy" --json | jq -r .reason)
echo "$reason" | grep -q "legacy-only" || fail "refusal does not name a legacy-only device: $reason"
echo "$reason" | grep -q "disable-modern" || fail "refusal does not say what to do: $reason"
[ "$(driver_of "$legacy")" = virtio-pci ] || fail "the refused NIC is on $(driver_of "$legacy"), not virtio-pci"
echo "refused: $reason"

# Without the opt-in, a device in no IOMMU group is refused with a reason
# that names the setting (the twin NIC: modern, iommu_platform=off).
stop_virtiod
twin=$(nic_function 52:54:00:12:34:02)
[ -n "$twin" ] || fail "no kernel-driven twin NIC"
printf '[Device]\nAddress=%s\nClaim=yes\n' "$twin" > /etc/virtiod/virtiod.conf.d/50-test.conf
systemctl start virtiod || fail "systemctl start virtiod failed"
wait_state "$twin" refused 60
reason=$(virtioctl status "$twin" --json | jq -r .reason)
echo "$reason" | grep -q "UnsafeNoIOMMU=yes" || fail "refusal without the opt-in does not name the setting: $reason"
[ "$(driver_of "$twin")" = virtio-pci ] || fail "the refused twin is on $(driver_of "$twin"), not virtio-pci"
echo "without the opt-in: $reason"
