# A NIC on a VM without an IOMMU (--variant noiommu; [Service]
# UnsafeNoIOMMU=yes, which lib.sh's start_virtiod writes there): the
# transitional NIC is lent through uio_pci_generic (Debian's kernels have no
# VFIO no-IOMMU mode), its DMA memory is hugepages at guest-physical
# addresses, ACCESS_PLATFORM is not negotiated, interrupts come on INTx.
# Then the net cases run on it unchanged: IPv4/IPv6 pings and TCP both ways
# (net/traffic.sh), offloads and a 100 MB file with sha256 both ways
# (net/offload-file.sh).
# case-timeout: 300
source /payload/cases/lib.sh
has_variant noiommu || fail "noiommu/net.sh needs --variant noiommu"
trap stop_virtiod EXIT
free0=$(awk '/HugePages_Free/ { print $2 }' /proc/meminfo)
start_virtiod_with_nic
s=$(virtioctl status "$net" --json)
echo "$s" | jq -e '.kernel_driver == "uio_pci_generic" and .dma == "physical" and .driver.interrupt_mode == "intx"
    and (.driver.negotiated.names | index("ACCESS_PLATFORM") | not)' >/dev/null \
    || fail "the NIC without an IOMMU: $(echo "$s" | jq -c '{kernel_driver, dma, i: .driver.interrupt_mode, n: .driver.negotiated.names}')"
free1=$(awk '/HugePages_Free/ { print $2 }' /proc/meminfo)
[ "$free1" -lt "$free0" ] || fail "no hugepages taken for DMA memory ($free0 free before, $free1 after)"
virtioctl status "$net" | grep -q "guest-physical" || fail "virtioctl status does not say the DMA is physical"
journalctl -u virtiod --no-pager | grep -q "uio_pci_generic" || fail "no log line says the device is lent through uio_pci_generic"
echo "DMA memory: $((free0 - free1)) hugepages of $(awk '/Hugepagesize/ { print $2 }' /proc/meminfo) kB"
stop_virtiod
[ "$(awk '/HugePages_Free/ { print $2 }' /proc/meminfo)" -eq "$free0" ] || fail "hugepages not given back after stop"
bash /payload/cases/net/traffic.sh
bash /payload/cases/net/offload-file.sh
