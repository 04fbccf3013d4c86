# No corruption from DMA at physical addresses (--variant noiommu): a 200 MB
# file in tmpfs keeps its sha256 and memtester finds no error while virtiod
# moves traffic both ways through the NIC (a device writing anywhere but its
# own buffers would show in one of them).
# case-timeout: 240
source /payload/cases/lib.sh
has_variant noiommu || fail "noiommu/memory-intact.sh needs --variant noiommu"
cleanup() { [ -z "${mt:-}" ] || kill "$mt" 2>/dev/null || true; ip netns del twin 2>/dev/null || true; rm -f /dev/shm/intact; stop_virtiod; }
trap cleanup EXIT
head -c 200M /dev/urandom > /dev/shm/intact
sum0=$(sha256sum < /dev/shm/intact)
start_nic_with_twin
# memtester over 8 MiB, with TCP streams both ways in 8 s rounds for as
# long as it runs (at least one round).
memtester 8M 1 > /tmp/memtester.out 2>&1 &
mt=$!
rounds=0 out=0 in=0 t0=$(date +%s)
while [ $rounds -eq 0 ] || kill -0 $mt 2>/dev/null; do
    twin_iperf_server 5301
    twin_iperf_server 5302
    iperf3 -c 10.77.0.2 -p 5301 -t 8 -J > /tmp/intact-tx.json &
    tx=$!
    iperf3 -c 10.77.0.2 -p 5302 -t 8 -R -J > /tmp/intact-rx.json || fail "iperf3 in failed: $(jq -r .error /tmp/intact-rx.json)"
    wait $tx || fail "iperf3 out failed: $(jq -r .error /tmp/intact-tx.json)"
    out=$((out + $(jq '.end.sum_received.bytes' /tmp/intact-tx.json))); in=$((in + $(jq '.end.sum_received.bytes' /tmp/intact-rx.json)))
    rounds=$((rounds + 1))
done
wait $mt || { tail -n 5 /tmp/memtester.out; fail "memtester found errors while virtiod moved traffic"; }
[ "$(sha256sum < /dev/shm/intact)" = "$sum0" ] || fail "the 200 MB tmpfs file changed while virtiod moved traffic"
echo "memtester 8M: ok in $(( $(date +%s) - t0 )) s; tmpfs file intact; TCP $rounds round(s): out $((out / 1000000)) MB, in $((in / 1000000)) MB"
