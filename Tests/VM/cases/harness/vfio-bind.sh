# vfio-pci can take a virtio function from the kernel and give it back:
# bind the block device to vfio-pci (its /dev/vfio/GROUP appears and /dev/vda
# goes), then return it to virtio-pci (/dev/vda comes back).
source /payload/cases/lib.sh
addr=$(virtio_functions 1042 | head -n1)
dev=/sys/bus/pci/devices/$addr
[ -b /dev/vda ] || fail "no /dev/vda before the test"
modprobe vfio-pci || fail "modprobe vfio-pci failed"
echo vfio-pci > "$dev/driver_override"
echo "$addr" > "$dev/driver/unbind"
echo "$addr" > /sys/bus/pci/drivers_probe
[ "$(basename "$(readlink "$dev/driver")")" = vfio-pci ] || fail "$addr not bound to vfio-pci"
group=$(basename "$(readlink "$dev/iommu_group")")
wait_for "[ -c /dev/vfio/$group ]" 5 || fail "/dev/vfio/$group did not appear"
[ ! -b /dev/vda ] || fail "/dev/vda still present while vfio-pci owns the device"
# Give it back.
echo > "$dev/driver_override"
echo "$addr" > "$dev/driver/unbind"
echo "$addr" > /sys/bus/pci/drivers_probe
[ "$(basename "$(readlink "$dev/driver")")" = virtio-pci ] || fail "$addr not back on virtio-pci"
wait_for "[ -b /dev/vda ]" 10 || fail "/dev/vda did not come back"
