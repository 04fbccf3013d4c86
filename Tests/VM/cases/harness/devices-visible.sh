# Every configured device is visible with the expected vendor/device ID and
# works with its kernel driver (the twin of what virtiod will drive).
source /payload/cases/lib.sh
for spec in "1041 2 net" "1042 1 block" "1045 1 balloon" "1043 1 console" "1049 2 9p" "1044 1 rng"; do
    set -- $spec
    n=$(virtio_functions "$1" | wc -l)
    [ "$n" -eq "$2" ] || fail "expected $2 $3 device(s) (1af4:$1), found $n"
    for f in $(virtio_functions "$1"); do
        drv=$(basename "$(readlink /sys/bus/pci/devices/$f/driver)")
        [ "$drv" = virtio-pci ] || fail "$3 at $f bound to '$drv', not virtio-pci"
    done
done
if has_variant transitional; then
    [ "$(cat /sys/bus/pci/devices/$(virtio_functions 1042)/device)" = 0x1001 ] || fail "block is not transitional"
fi
# The kernel drivers see the devices as QEMU was told to make them.
[ "$(cat /sys/block/vda/size)" -eq $((64 * 1024 * 1024 / 512)) ] || fail "vda is $(cat /sys/block/vda/size) sectors, expected 131072"
[ "$(cat /sys/block/vda/serial)" = virtiod-blk0 ] || fail "vda serial '$(cat /sys/block/vda/serial)'"
[ -n "$(iface_with_mac 52:54:00:12:34:01)" ] || fail "no NIC with MAC 52:54:00:12:34:01"
[ -n "$(iface_with_mac 52:54:00:12:34:02)" ] || fail "no NIC with MAC 52:54:00:12:34:02"
# The kernel's virtio_balloon clears ACCESS_PLATFORM (its PFNs are guest-physical)
# and QEMU's iommu_platform=on balloon then refuses FEATURES_OK: the device is
# there, but without a kernel driver. virtiod's balloon plugin accepts it.
grep -qx 0x0005 /sys/bus/virtio/devices/*/device || fail "no virtio device of type 5 (balloon) on the virtio bus"
[ -e /dev/hvc0 ] || fail "no /dev/hvc0 for the virtio console"
grep -qx org.virtiod.console0 /sys/class/virtio-ports/vport*/name 2>/dev/null \
    || fail "no virtio port named org.virtiod.console0 (ports: $(cat /sys/class/virtio-ports/vport*/name 2>/dev/null | tr '\n' ' '))"
mkdir -p /mnt/9p && mount -t 9p -o trans=virtio,version=9p2000.L virtiod9p /mnt/9p || fail "9p mount of tag virtiod9p failed"
grep -q "hello from the host" /mnt/9p/hello.txt || fail "9p share content wrong"
umount /mnt/9p
