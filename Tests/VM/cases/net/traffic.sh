# The virtiod NIC is a TAP interface (vtnet0) with the device's MAC; it and
# the kernel-driven twin (in a netns, same QEMU hub) exchange IPv4 and IPv6
# pings and a TCP stream both ways; per-queue counters move; QMP set_link
# turns the TAP carrier off and on within a second.
source /payload/cases/lib.sh
cleanup() { ip netns del twin 2>/dev/null || true; stop_virtiod; }
trap cleanup EXIT
start_virtiod_with_nic
ip link show vtnet0 >/dev/null 2>&1 || fail "no vtnet0 interface"
[ "$(cat /sys/class/net/vtnet0/address)" = 52:54:00:12:34:01 ] || fail "vtnet0 MAC $(cat /sys/class/net/vtnet0/address)"
virtioctl list | grep "$net" | grep -q vtnet0 || fail "virtioctl list does not show vtnet0: $(virtioctl list | grep "$net")"

twin_and_local vtnet0
ping -c 3 -i 0.2 -W 3 10.77.0.2 > /tmp/ping4 || fail "IPv4 ping through virtiod failed: $(tail -n2 /tmp/ping4 | head -n1)"
ping -6 -c 3 -i 0.2 -W 3 fd77::2 > /tmp/ping6 || fail "IPv6 ping through virtiod failed: $(tail -n2 /tmp/ping6 | head -n1)"
echo "ping: $(tail -n1 /tmp/ping4)"

twin_iperf_server 5201
iperf3 -c 10.77.0.2 -p 5201 -t 3 -J > /tmp/iperf-tx.json || fail "iperf3 to the twin failed: $(jq -r .error /tmp/iperf-tx.json)"
twin_iperf_server 5202
iperf3 -c 10.77.0.2 -p 5202 -t 3 -R -J > /tmp/iperf-rx.json || fail "iperf3 from the twin failed: $(jq -r .error /tmp/iperf-rx.json)"
tx=$(jq '.end.sum_received.bytes' /tmp/iperf-tx.json); rx=$(jq '.end.sum_received.bytes' /tmp/iperf-rx.json)
[ "$tx" -gt 100000 ] && [ "$rx" -gt 100000 ] || fail "TCP streams too small: tx $tx bytes, rx $rx bytes"
echo "TCP through virtiod (TCG): out $(jq '.end.sum_received.bits_per_second / 1e6 | floor' /tmp/iperf-tx.json) Mbit/s, in $(jq '.end.sum_received.bits_per_second / 1e6 | floor' /tmp/iperf-rx.json) Mbit/s"

if has_variant mq; then
    # Four queue pairs, one TAP queue each: parallel flows spread over them.
    twin_iperf_server 5203
    iperf3 -c 10.77.0.2 -p 5203 -t 3 -P 8 -J > /tmp/iperf-mq.json || fail "iperf3 -P 8 failed"
    s=$(virtioctl status "$net" --json)
    [ "$(echo "$s" | jq .driver.config.queue_pairs)" -eq 4 ] || fail "queue pairs: $(echo "$s" | jq .driver.config.queue_pairs)"
    [ "$(echo "$s" | jq '[.driver.queues[] | select(.name | startswith("transmitq")) | select(.counters.packets > 0)] | length')" -ge 2 ] \
        || fail "parallel flows all went through one transmit queue: $(echo "$s" | jq -c '[.driver.queues[] | {name, p: .counters.packets}]')"
fi
s=$(virtioctl status "$net" --json)
# Summed over queue pairs: with several, flows may all hash away from pair 0.
echo "$s" | jq -e '.driver.stub == false
    and ([.driver.queues[] | select(.name | startswith("receiveq")) | .counters.packets] | add) > 100
    and ([.driver.queues[] | select(.name | startswith("transmitq")) | .counters.packets] | add) > 100' >/dev/null \
    || fail "counters did not move: $(echo "$s" | jq -c '[.driver.queues[] | {name, counters}]')"

# Link state follows the device: QMP set_link → config interrupt → carrier.
host_step set_link '{"name": "nic0", "up": false}' >/dev/null || fail "set_link off failed"
wait_for "[ \$(cat /sys/class/net/vtnet0/carrier) = 0 ]" 1 || fail "carrier still on 1 s after link down"
host_step set_link '{"name": "nic0", "up": true}' >/dev/null || fail "set_link on failed"
wait_for "[ \$(cat /sys/class/net/vtnet0/carrier) = 1 ]" 1 || fail "carrier still off 1 s after link up"
ping -c 1 -W 3 10.77.0.2 >/dev/null || fail "no traffic after the link came back"
