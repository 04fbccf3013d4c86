# Host-side steps through QMP work during a run: the host flips the twin
# NIC's link off and on, and the guest sees carrier follow within a second.
source /payload/cases/lib.sh
b=$(iface_with_mac 52:54:00:12:34:02)
ip link set "$b" up
wait_for "[ \$(cat /sys/class/net/$b/carrier) = 1 ]" 5 || fail "$b has no carrier to begin with"
host_step set_link '{"name": "nic1", "up": false}' >/dev/null || fail "set_link off failed"
wait_for "[ \$(cat /sys/class/net/$b/carrier) = 0 ]" 1 || fail "carrier of $b still up 1 s after set_link off"
host_step set_link '{"name": "nic1", "up": true}' >/dev/null || fail "set_link on failed"
wait_for "[ \$(cat /sys/class/net/$b/carrier) = 1 ]" 1 || fail "carrier of $b still down 1 s after set_link on"
out=$(host_step query-status) || fail "$out"
echo "$out" | grep -q '"running"' || fail "query-status: $out"
host_step no-such-command >/dev/null && fail "an unknown QMP command was reported as success"
true
