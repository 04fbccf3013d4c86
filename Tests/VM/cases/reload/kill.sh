# Crashes: kill -9 of the net plugin — it is restarted, the device reset
# (its state cannot be trusted), traffic resumes by itself and vtnet0 keeps
# its addresses; the outage is printed. kill -9 of virtiod — systemd restarts
# it, the plugins (told by systemd) hand over, and the device is not reset:
# QEMU's receive used index continues.
source /payload/cases/lib.sh
start_nic_with_twin

# kill -9 of the plugin, while the twin pings at 50 pps.
ip netns exec twin ping -D -n -i 0.02 -c 300 -W 2 10.77.0.1 > /tmp/kill-ping 2>&1 &
pinger=$!
sleep 1
pid=$(virtioctl status "$net" --json | jq .plugin.pid)
kill -9 "$pid"
wait_for "[ \"\$(virtioctl status $net --json | jq .plugin.restarts)\" = 1 ]" 20 || fail "plugin not restarted"
wait_state "$net" running 30
wait $pinger || true
read -r sent got < <(ping_counts /tmp/kill-ping)
echo "kill -9 of the net plugin: outage (longest gap between replies) $(longest_reply_gap /tmp/kill-ping) ms, $((sent - got)) of $sent pings lost"
virtioctl status "$net" --json | jq -e '.plugin.last_exit | test("signal 9")' >/dev/null || fail "last_exit does not say signal 9"
ip -o addr show dev vtnet0 | grep -q 10.77.0.1/24 || fail "vtnet0 lost its address"
ping -c 3 -i 0.2 -W 3 10.77.0.2 >/dev/null || fail "traffic did not resume after the plugin was killed"
[ "$got" -gt 0 ] && tail -n 5 /tmp/kill-ping | grep -q "bytes from" || fail "no replies after the kill: $(tail -n 3 /tmp/kill-ping)"

# kill -9 of virtiod itself.
ping -c 50 -i 0.02 -q 10.77.0.2 >/dev/null
u1=$(device_used_idx nic0 0) || fail "QMP: $u1"
main=$(systemctl show -P MainPID virtiod)
kill -9 "$main"
wait_for "[ \"\$(systemctl show -P MainPID virtiod)\" != $main ] && [ \"\$(systemctl show -P MainPID virtiod)\" != 0 ]" 30 \
    || fail "systemd did not restart virtiod: $(systemctl show -P ActiveState virtiod)"
wait_state "$net" running 30
u2=$(device_used_idx nic0 0) || fail "QMP: $u2"
echo "kill -9 of virtiod: restarted by systemd; device-side receive used index $u1 → $u2"
[ "$u1" -ge 50 ] && [ $(( (u2 - u1 + 65536) % 65536 )) -lt 200 ] || fail "used index $u1 → $u2: the device was reset"
journalctl -u virtiod -n 50 --no-pager -o cat | grep -q "taken back after a restart of virtiod.*no reset" || fail "no fd-store take-back in the journal"
ip -o addr show dev vtnet0 | grep -q 10.77.0.1/24 || fail "vtnet0 lost its address"
ping -c 3 -i 0.2 -W 3 10.77.0.2 >/dev/null || fail "no traffic after virtiod was killed"
