# Each virtio function is alone in its IOMMU group (so VFIO can take it alone),
# and the IOMMU really translates (DMA remapping is on).
source /payload/cases/lib.sh
[ -d /sys/class/iommu ] && [ -n "$(ls /sys/class/iommu)" ] || fail "no IOMMU registered (intel_iommu=on missing?)"
n=0
for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor")" = 0x1af4 ] || continue
    [ -e "$d/iommu_group" ] || fail "$(basename "$d") has no IOMMU group"
    members=$(ls "$d/iommu_group/devices" | wc -l)
    [ "$members" -eq 1 ] || fail "$(basename "$d") shares IOMMU group $(basename "$(readlink "$d/iommu_group")") with $((members - 1)) other device(s)"
    n=$((n + 1))
done
[ "$n" -eq 8 ] || fail "expected 8 virtio functions, saw $n"
