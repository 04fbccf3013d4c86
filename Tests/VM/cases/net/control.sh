# The control queue: the device's receive filter follows vtnet0 (frames to
# another MAC are dropped by the device until `promisc on`), a new MAC on
# vtnet0 is set on the device (and traffic to it passes the filter), and a
# QMP announce-self makes the plugin send a gratuitous ARP and ack it.
source /payload/cases/lib.sh
start_nic_with_twin
twin=$(ip -n twin -o link | awk '/52:54:00:12:34:02/ { sub(":", "", $2); sub("@.*", "", $2); print $2 }')
s=$(virtioctl status "$net" --json)
for f in CTRL_RX CTRL_MAC_ADDR GUEST_ANNOUNCE; do
    echo "$s" | jq -e --arg f "$f" '.driver.negotiated.names | index($f)' >/dev/null || fail "$f not negotiated: $(echo "$s" | jq -c .driver.negotiated.names)"
done
echo "$s" | jq -e '.driver.config.rx_filter | startswith("unicast")' >/dev/null || fail "rx filter: $(echo "$s" | jq -r .driver.config.rx_filter)"

# Frames to a MAC that is not vtnet0's: dropped by the device, unless promiscuous.
ip -n twin neigh replace 10.77.0.99 lladdr 52:54:00:aa:bb:cc dev "$twin"
rx() { received_packets "$net"; }
stray() { ip netns exec twin ping -c 20 -i 0.05 -W 1 10.77.0.99 >/dev/null 2>&1 || true; }
r0=$(rx); stray; r1=$(rx)
ip link set vtnet0 promisc on
wait_for "virtioctl status $net --json | jq -e '.driver.config.rx_filter == \"promiscuous\"'" 5 || fail "filter did not follow promisc on"
stray; r2=$(rx)
ip link set vtnet0 promisc off
wait_for "virtioctl status $net --json | jq -e '.driver.config.rx_filter | startswith(\"unicast\")'" 5 || fail "filter did not follow promisc off"
echo "20 frames to another MAC: $((r1 - r0)) received with the filter on, $((r2 - r1)) in promiscuous mode"
[ $((r1 - r0)) -lt 5 ] || fail "the device filter let $((r1 - r0)) stray frames through"
[ $((r2 - r1)) -ge 18 ] || fail "promiscuous mode received only $((r2 - r1)) of 20 stray frames"

# A new MAC on vtnet0 reaches the device; the filter then passes frames to it.
ip link set vtnet0 address 52:54:00:12:34:99
wait_for "[ \"\$(virtioctl status $net --json | jq -r .driver.config.mac)\" = 52:54:00:12:34:99 ]" 5 \
    || fail "device MAC did not follow: $(virtioctl status "$net" --json | jq -r .driver.config.mac)"
ip -n twin neigh flush dev "$twin"
ping -c 3 -i 0.2 -W 3 10.77.0.2 >/dev/null || fail "no traffic with the new MAC"
ip link set vtnet0 address 52:54:00:12:34:01
ip -n twin neigh flush dev "$twin"

# QMP announce-self: a gratuitous ARP for 10.77.0.1 (sender = target) reaches
# the twin (whose kernel driver announces itself too, hence the filter).
ip netns exec twin timeout 20 tcpdump -n -l -i "$twin" -c 1 'arp and arp[6:2] == 1 and arp[14:4] == arp[24:4] and arp[14:4] == 0x0a4d0001' > /tmp/garp 2>/tmp/garp.err &
dump=$!
wait_for "grep -q 'listening on' /tmp/garp.err" 10 || fail "tcpdump did not start: $(cat /tmp/garp.err)"
host_step announce-self '{"initial": 50, "max": 550, "rounds": 1, "step": 100}' >/dev/null || fail "QMP announce-self failed"
wait $dump || fail "no gratuitous ARP seen on the twin: $(cat /tmp/garp)"
grep -q "10.77.0.1" /tmp/garp || fail "gratuitous ARP is not for 10.77.0.1: $(cat /tmp/garp)"
s=$(virtioctl status "$net" --json)
echo "$s" | jq -e '.driver.config.announcements >= 1 and (.driver.config.status / 2 | floor) % 2 == 0' >/dev/null \
    || fail "announce not acked: $(echo "$s" | jq -c '.driver.config | {status, announcements}')"
echo "announce-self: $(head -n1 /tmp/garp)"
