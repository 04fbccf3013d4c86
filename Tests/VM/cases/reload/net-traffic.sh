# `virtioctl reload net` while a TCP stream runs and the twin pings the
# virtiod NIC at 100 pps: a new plugin process takes over the running device
# (no reset), with 0 TCP resets and 0 lost pings; the longest gap between
# replies is printed. vtnet0 keeps its addresses; counters carry over.
source /payload/cases/lib.sh
t0=$(date +%s)
start_nic_with_twin
old=$(virtioctl status "$net" --json | jq .plugin.pid)
before=$(received_per_queue "$net")

under_traffic 'virtioctl reload net > /tmp/reload-out 2>&1' "reload net" 12 until-done
cat /tmp/reload-out
s=$(virtioctl status "$net" --json)
new=$(echo "$s" | jq .plugin.pid)
[ "$new" != "$old" ] && [ "$new" != null ] || fail "plugin pid did not change ($old → $new)"
! kill -0 "$old" 2>/dev/null || fail "old plugin $old still runs"
echo "$s" | jq -e '.state == "running" and .plugin.reloads == 1 and .plugin.restarts == 0' >/dev/null \
    || fail "after reload: $(echo "$s" | jq -c '{state, plugin}')"
# Counters carry over: no receive queue's count went back, and traffic added to them
# (on the mq variant it may land on any queue).
after=$(received_per_queue "$net")
jq -ne --argjson b "$before" --argjson a "$after" \
    '($a | length) == ($b | length) and ([range($b | length) | $a[.] >= $b[.]] | all) and ($a | add) > ($b | add)' >/dev/null \
    || fail "receive counters did not carry over: $before → $after"
ip -o addr show dev vtnet0 | grep -q 10.77.0.1/24 || fail "vtnet0 lost its address"
# virtiod's lines and the plugins' (each plugin process is its own unit).
journalctl -u virtiod -u 'virtiod-net-*' --since "@$t0" --no-pager -o cat > /tmp/reload-journal
grep -q "took over from net .* without a device reset" /tmp/reload-journal || fail "no take-over line in the journal"
! grep "reset" /tmp/reload-journal | grep -qv "without a device reset" || fail "the journal shows a reset: $(grep reset /tmp/reload-journal | grep -v 'without a device reset' | head -n1)"
echo "reload: $(grep -o 'pause [0-9.]* ms' /tmp/reload-out)"
