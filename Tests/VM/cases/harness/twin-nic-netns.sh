# The two NICs share a QEMU-internal hub. The second (the kernel-driven twin)
# goes into a network namespace; both come up and reach each other over
# IPv4 and IPv6 link-local addresses (nothing here can route anywhere).
source /payload/cases/lib.sh
a=$(iface_with_mac 52:54:00:12:34:01)
b=$(iface_with_mac 52:54:00:12:34:02)
[ -n "$a" ] && [ -n "$b" ] || fail "NICs not found"
trap 'ip netns del twin 2>/dev/null || true' EXIT   # the twin NIC goes back even if a check fails
ip netns add twin
ip link set "$b" netns twin
ip -n twin link set lo up
ip -n twin addr add 169.254.77.2/16 dev "$b"
ip -n twin link set "$b" up
ip addr add 169.254.77.1/16 dev "$a"
ip link set "$a" up
wait_for "ip -n twin -o link show $b | grep -q 'state UP'" 10 || fail "twin NIC $b did not come up in the namespace"
wait_for "ip -o link show $a | grep -q 'state UP'" 10 || fail "NIC $a did not come up"
ping -c 3 -i 0.2 -W 2 -I "$a" 169.254.77.2 > /tmp/ping4 || fail "IPv4 ping to the twin failed: $(tail -n1 /tmp/ping4)"
# Both link-local addresses must be through duplicate address detection (~1 s) first.
wait_for "ip -n twin -6 -o addr show dev $b scope link | grep -q . && ! ip -n twin -6 -o addr show dev $b scope link | grep -q tentative" 10 \
    || fail "twin IPv6 link-local address missing or still tentative"
wait_for "ip -6 -o addr show dev $a scope link | grep -q . && ! ip -6 -o addr show dev $a scope link | grep -q tentative" 10 \
    || fail "IPv6 link-local address of $a missing or still tentative"
ll=$(ip -n twin -6 -o addr show dev "$b" scope link | awk '{print $4}' | cut -d/ -f1)
ping -6 -c 3 -i 0.2 -W 2 "$ll%$a" > /tmp/ping6 || fail "IPv6 ping to the twin failed: $(tail -n1 /tmp/ping6)"
