# A NIC with 8 queue pairs and more MSI-X vectors than one fd-passing
# message carries (a table of 70; 8 pairs use 18: a vector per queue) is
# claimed, its plugin attaches (fds by name, in batches) and traffic passes
# on several queue pairs. The NIC is hot-added over QMP on an 8-queue TAP
# backend (vmtap2, on the bridge with the twin).
source /payload/cases/lib.sh
cleanup() {
    ip netns del twin 2>/dev/null || true
    stop_virtiod
    host_step device_del '{"id": "nic8"}' >/dev/null 2>&1 || true
    sleep 1
    host_step netdev_del '{"id": "net8"}' >/dev/null 2>&1 || true
}
trap cleanup EXIT
out=$(host_step netdev_add '{"type": "tap", "id": "net8", "ifname": "vmtap2", "script": "no", "downscript": "no", "queues": 8}') \
    || fail "netdev_add of the 8-queue backend failed (it needs run.sh's --net tap): $out"
out=$(host_step device_add '{"driver": "virtio-net-pci", "id": "nic8", "netdev": "net8", "bus": "hp0", "mq": "on", "vectors": 70, "mac": "52:54:00:12:34:08", "disable-legacy": "on", "iommu_platform": "on"}') \
    || fail "device_add of the NIC failed: $out"
wait_for "[ -n \"\$(iface_with_mac 52:54:00:12:34:08)\" ]" 60 || fail "the hot-added NIC did not appear"
start_virtiod "[Device]
MACAddress=52:54:00:12:34:08
Claim=yes
InterfaceName=vtnet8"
nic=$(virtioctl list --json | jq -r '.[] | select(.type == "net" and .kernel_driver == "vfio-pci") | .address')
[ -n "$nic" ] || fail "the NIC was not claimed: $(virtioctl list --json | jq -c '.[] | select(.type == "net" and .state != "unclaimed") | {address, state, reason}')"
wait_state "$nic" running 60
s=$(virtioctl status "$nic" --json)
echo "$s" | jq -e '.driver.msix_vectors >= 65 and .driver.config.queue_pairs == 8 and
    ([.driver.queues[] | select(.msix_vector != null)] | length) == 17' >/dev/null \
    || fail "status: $(echo "$s" | jq -c '{v: .driver.msix_vectors, pairs: .driver.config.queue_pairs, q: [.driver.queues[] | {name, msix_vector}]}')"
echo "attached: $(echo "$s" | jq -r '.driver.msix_vectors') MSI-X vectors, $(echo "$s" | jq -r '.driver.config.queue_pairs') queue pairs, TAP queues: $(ls /sys/class/net/vtnet8/queues | grep -c rx)"
twin_and_local vtnet8
ping -c 3 -i 0.2 -W 3 10.77.0.2 >/dev/null || fail "no ping through vtnet8"
twin_iperf_server 5308
iperf3 -c 10.77.0.2 -p 5308 -t 4 -P 8 -J > /tmp/mv-iperf.json || fail "iperf3 failed: $(tail -n 3 /tmp/mv-iperf.json)"
used=$(virtioctl status "$nic" --json | jq '[.driver.queues[] | select(.name | startswith("transmitq")) | select(.counters.packets > 100)] | length')
echo "8 TCP streams: $(jq '.end.sum_received.bits_per_second / 1e6 | floor' /tmp/mv-iperf.json) Mbit/s, on $used transmit queue(s)"
[ "$used" -ge 2 ] || fail "traffic used $used transmit queue(s) of 8"
