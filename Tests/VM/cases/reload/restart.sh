# `systemctl restart virtiod` keeps the NIC running: the devices' fds and the
# plugin's socket wait in systemd's fd store, the net plugin runs on in its
# own unit, and the new virtiod talks to it again. With a TCP stream
# and the twin pinging at 100 pps: 0 TCP resets, 0 lost pings; the longest
# gap between replies is printed. Device-side, QEMU's used indices of the
# receive queues continue (a reset would start them again from 0).
source /payload/cases/lib.sh
t0=$(date +%s)
start_nic_with_twin
main0=$(systemctl show -P MainPID virtiod)
plugin0=$(virtioctl status "$net" --json | jq .plugin.pid)

restart() {
    local s=$(date +%s%N)
    systemctl restart virtiod || return 1
    wait_state "$net" running 30
    echo "systemctl restart + plugin running again: $(( ($(date +%s%N) - s) / 1000000 )) ms"
}
under_traffic restart "systemctl restart virtiod" 16 until-done
[ "$(systemctl show -P MainPID virtiod)" != "$main0" ] || fail "virtiod was not restarted"
[ "$(virtioctl status "$net" --json | jq .plugin.pid)" = "$plugin0" ] || fail "the plugin was replaced: it should have kept running"
[ "$(driver_of "$net")" = "$LENT_DRIVER" ] || fail "the NIC went back to $(driver_of "$net")"
ip -o addr show dev vtnet0 | grep -q 10.77.0.1/24 || fail "vtnet0 lost its address"
journalctl -u virtiod --since "@$t0" --no-pager -o cat > /tmp/restart-journal
grep -q "taken back after a restart of virtiod.*no reset" /tmp/restart-journal || fail "no fd-store take-back in the journal"
grep -q "kept running and answers" /tmp/restart-journal || fail "no line saying the plugin kept running"
! grep "reset" /tmp/restart-journal | grep -v "without a device reset\|no reset" | grep -q . \
    || fail "the journal shows a reset: $(grep reset /tmp/restart-journal | grep -v 'without a device reset\|no reset' | head -n1)"

# Device side, in a quiet moment: the receive queues' used indices go on
# (every receive queue: with several queue pairs the replies may land on any).
rxq=$(virtioctl status "$net" --json | jq -r '[.driver.queues[] | select(.name | startswith("receiveq")) | .index] | map(tostring) | join(" ")')
[ -n "$rxq" ] || fail "no receive queues in the NIC's status"
used_all() { local q u out=""; for q in $rxq; do u=$(device_used_idx nic0 "$q") || return 1; out="$out $u"; done; echo $out; }
ping -c 50 -i 0.02 -q 10.77.0.2 >/dev/null
u1=($(used_all)) || fail "QMP: ${u1[*]}"
systemctl restart virtiod
wait_state "$net" running 30
u2=($(used_all)) || fail "QMP: ${u2[*]}"
echo "device-side receive used indices (queues $rxq) across a quiet restart: ${u1[*]} → ${u2[*]}"
[ ${#u1[@]} -eq ${#u2[@]} ] && [ ${#u1[@]} -ge 1 ] || fail "receive queues ${u1[*]} → ${u2[*]}"
sum=0
for i in "${!u1[@]}"; do
    sum=$((sum + u1[i]))
    [ $(( (u2[i] - u1[i] + 65536) % 65536 )) -lt 200 ] || fail "used index of receive queue $i: ${u1[i]} → ${u2[i]}: the device was reset"
done
[ "$sum" -ge 50 ] || fail "used indices ${u1[*]} → ${u2[*]}: fewer than the 50 pings just answered, as after a reset"
ping -c 2 -i 0.2 -W 3 10.77.0.2 >/dev/null || fail "no traffic after the restarts"

# A stop still gives the NIC back to the kernel (the fd store is emptied).
systemctl stop virtiod
wait_for "[ \$(driver_of $net) = virtio-pci ]" 20 || fail "after stop the NIC is on $(driver_of "$net")"
