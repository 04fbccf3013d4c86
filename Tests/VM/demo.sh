#!/bin/bash
# make demo: what a user would look at on a machine with virtio devices.
# virtiod itself (systemctl start virtiod, virtioctl list) is not built yet;
# until it is, this shows the devices it will claim and the core running here.
say() { echo "VIRTIOD-DEMO $*"; }
show() { say "\$ $*"; "$@" 2>&1 | sed 's/^/VIRTIOD-DEMO   /'; }
say "== virtio PCI functions in this VM (vendor 1af4), their kernel drivers and IOMMU groups"
for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor)" = 0x1af4 ] || continue
    say "  $(basename $d)  1af4:$(cut -c3- $d/device)  driver=$(basename "$(readlink $d/driver)")  iommu_group=$(basename "$(readlink $d/iommu_group)")"
done
show ip -br link
show lsblk -o NAME,SIZE,SERIAL /dev/vda
if systemctl cat virtiod.service >/dev/null 2>&1; then
    show systemctl start virtiod
    show virtioctl list
else
    say "virtiod.service is not installed yet: the supervisor is the next piece of work (see README)."
fi
say "== the virtqueue core, installed statically linked, running in this guest (TCG: slow CPU)"
show /usr/libexec/virtiod/virtio-ring-bench --seconds 0.05
