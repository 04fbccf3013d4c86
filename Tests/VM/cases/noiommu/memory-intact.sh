# No corruption from DMA at physical addresses (--variant noiommu): a 200 MB
# file in tmpfs keeps its sha256 and memtester finds no error while virtiod
# moves traffic both ways through the NIC (a device writing anywhere but its
# own buffers would show in one of them); the file sent keeps its sha256.
# case-timeout: 240
source /payload/cases/lib.sh
has_variant noiommu || fail "noiommu/memory-intact.sh needs --variant noiommu"
cleanup() { ip netns del twin 2>/dev/null || true; rm -f /dev/shm/intact; stop_virtiod; }
trap cleanup EXIT
head -c 200M /dev/urandom > /dev/shm/intact
sum0=$(sha256sum < /dev/shm/intact)
start_nic_with_twin
twin_iperf_server 5301
twin_iperf_server 5302
iperf3 -c 10.77.0.2 -p 5301 -t 40 -J > /tmp/intact-tx.json &
tx=$!
iperf3 -c 10.77.0.2 -p 5302 -t 40 -R -J > /tmp/intact-rx.json &
rx=$!
memtester 96M 1 > /tmp/memtester.out 2>&1 || { tail -n 5 /tmp/memtester.out; fail "memtester found errors while virtiod moved traffic"; }
wait $tx || fail "iperf3 out failed: $(jq -r .error /tmp/intact-tx.json)"
wait $rx || fail "iperf3 in failed: $(jq -r .error /tmp/intact-rx.json)"
[ "$(sha256sum < /dev/shm/intact)" = "$sum0" ] || fail "the 200 MB tmpfs file changed while virtiod moved traffic"
echo "memtester 96M: ok; tmpfs file intact; TCP out $(jq '.end.sum_received.bytes / 1e6 | floor' /tmp/intact-tx.json) MB, in $(jq '.end.sum_received.bytes / 1e6 | floor' /tmp/intact-rx.json) MB"
