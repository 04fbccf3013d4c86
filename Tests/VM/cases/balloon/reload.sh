# case-timeout: 300
# Held pages survive the plugin being replaced: with 128 MiB in the balloon,
# `virtioctl reload balloon` and `systemctl restart virtiod` change nothing
# the host or the guest sees (size, held MiB, MemAvailable), and the
# successor still knows every frame (it deflates all of it). A plugin killed
# with SIGKILL resets the device: the supervisor gives the pages back and the
# fresh plugin follows the target again.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
start_balloon
target=$((GUEST_RAM - (128 << 20)))
balloon_to "$target"
wait_balloon "$target" 30
look() { echo "size $(balloon_size) held $(balloon_held_mib) actual $(virtioctl status "$bal" --json | jq .driver.config.actual)"; }
before=$(look); avail0=$(mem_available_mib)
inflated=$(virtioctl status "$bal" --json | jq '[.driver.queues[].counters.inflated_chunks // 0] | add')
[ $((inflated * 4)) -eq 128 ] || fail "inflated_chunks $inflated (of 4 MiB)"
same() { # same WHAT
    local now=$(look) avail=$(mem_available_mib)
    [ "$now" = "$before" ] || fail "after $1: $now (was $before)"
    [ $((avail - avail0)) -le 24 ] && [ $((avail0 - avail)) -le 24 ] || fail "after $1 MemAvailable $avail0 → $avail MiB"
}
pid0=$(virtioctl status "$bal" --json | jq .plugin.pid)
virtioctl reload balloon > /tmp/reload.out 2>&1 || fail "reload: $(cat /tmp/reload.out)"
pid1=$(virtioctl status "$bal" --json | jq .plugin.pid)
[ "$pid1" != "$pid0" ] || fail "reload kept pid $pid0"
sleep 2; same "a reload"
[ "$(virtioctl status "$bal" --json | jq '[.driver.queues[].counters.inflated_chunks // 0] | add')" -eq "$inflated" ] \
    || fail "the successor inflated again or lost the count"
echo "reload: pid $pid0 → $pid1, $(look)"
systemctl restart virtiod
wait_state "$bal" running 60
sleep 2; same "a restart of virtiod"
echo "restart of virtiod: $(look)"
# Every frame known to the successor: all of it deflates.
balloon_to "$GUEST_RAM"
wait_balloon "$GUEST_RAM" 30
[ "$(balloon_held_mib)" -eq 0 ] || fail "held after deflating: $(balloon_held_mib) MiB"
# A crash: the reset device starts from nothing, the fresh plugin inflates again.
balloon_to "$target"
wait_balloon "$target" 30
pid=$(virtioctl status "$bal" --json | jq .plugin.pid)
kill -9 "$pid"
wait_for "[ \"\$(virtioctl status $bal --json | jq .plugin.pid)\" != $pid ] && [ \"\$(virtioctl status $bal --json | jq -r .state)\" = running ]" 60 \
    || fail "the plugin was not restarted"
journalctl -u virtiod --no-pager | grep -q "balloon: 128 MiB given back" || fail "the supervisor did not give the pages back after the crash"
wait_balloon "$target" 20
[ "$(balloon_held_mib)" -eq 128 ] || fail "held after the crash: $(balloon_held_mib)"
echo "kill -9: the pages went back to the guest, the fresh plugin holds 128 MiB again"
balloon_to "$GUEST_RAM"
wait_balloon "$GUEST_RAM" 30
