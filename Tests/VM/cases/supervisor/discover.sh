# `virtiod discover --json` (installed by make install) lists every virtio
# function of the VM with its type, kernel owner, IOMMU group and the kernel
# devices on it, and claims nothing.
source /payload/cases/lib.sh
before=$(for d in /sys/bus/pci/devices/*; do readlink "$d/driver" || true; done)
out=$(virtiod discover --json) || fail "virtiod discover failed: $out"
after=$(for d in /sys/bus/pci/devices/*; do readlink "$d/driver" || true; done)
[ "$before" = "$after" ] || fail "discover changed driver bindings"
[ "$(echo "$out" | grep -c '"address"')" -eq 8 ] || fail "expected 8 functions: $out"
for t in net block balloon console 9p; do
    echo "$out" | grep -q "\"type\" : \"$t\"" || fail "type $t missing"
done
[ "$(echo "$out" | grep -c '"owner" : "kernel"')" -ge 5 ] || fail "functions not reported as kernel-owned"
[ "$(echo "$out" | grep -c '"iommu_group" : [0-9]')" -eq 8 ] || fail "IOMMU groups missing"
echo "$out" | grep -q '"vda"' || fail "vda not listed under the block function"
echo "$out" | grep -q "\"$(iface_with_mac 52:54:00:12:34:01)\"" || fail "NIC interface not listed"
virtiod discover | tail -n1 | grep -q "8 virtio functions listed." || fail "table summary: $(virtiod discover | tail -n1)"
virtiod no-such-verb >/dev/null 2>&1 && fail "an unknown verb exited 0"
true
