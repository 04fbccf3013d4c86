# Reload under traffic on a VM without an IOMMU: reload/net-traffic.sh (a TCP
# stream and 100 pps pings through `virtioctl reload net`: 0 TCP resets, 0
# lost pings) with the NIC lent through uio_pci_generic and its rings in
# hugepages at physical addresses — the successor maps the same hugepages and
# is told the same addresses; then a restart of virtiod, which takes the
# device back from the fd store (sysfs files, /dev/uioN, the hugepage memfd).
# case-timeout: 240
source /payload/cases/lib.sh
has_variant noiommu || fail "noiommu/reload.sh needs --variant noiommu"
bash /payload/cases/reload/net-traffic.sh
bash /payload/cases/reload/restart.sh
