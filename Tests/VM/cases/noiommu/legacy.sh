# A legacy-only NIC (virtio 0.9.5: QEMU's disable-modern=on) on a VM without
# an IOMMU is refused, with a reason that says what it is and what to do;
# it stays with the kernel's virtio-pci. (virtiod drives modern and
# transitional devices; a transitional NIC passes traffic in noiommu/net.sh.)
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
