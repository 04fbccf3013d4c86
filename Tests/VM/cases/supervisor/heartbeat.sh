# A plugin that hangs (SIGSTOP: alive but silent) misses its heartbeat, is
# killed and restarted after the rule's HeartbeatSec= (not before), and the
# cause shows in virtioctl status and the journal.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
con=$(virtio_functions 1043)
start_virtiod "[Device]
Type=console
Claim=yes
HeartbeatSec=6"
wait_state "$con" running 60
old=$(virtioctl status "$con" --json | jq .plugin.pid)
t0=$(date +%s%N)
kill -STOP "$old"
wait_for "[ \"\$(virtioctl list --json | jq -r '.[] | select(.address == \"$con\") | .plugin.restarts')\" -ge 1 ]" 30 \
    || fail "a silent plugin was not restarted within 30 s: $(virtioctl list --json | jq -c ".[] | select(.address == \"$con\") | .plugin")"
waited=$(( ($(date +%s%N) - t0) / 1000000 ))
# The last answer came at most 1.5 s (a quarter of 6 s) before the stop, and
# the supervisor looks every second: the kill falls between 4.5 and ~8 s
# (with the default 20 s it would come after 18 s).
[ "$waited" -ge 4500 ] || fail "killed after $waited ms, before HeartbeatSec=6 could pass"
[ "$waited" -le 12000 ] || fail "killed only after $waited ms: HeartbeatSec=6 was not applied"
! kill -0 "$old" 2>/dev/null || fail "the hung plugin $old still exists"
wait_state "$con" running 60
virtioctl status "$con" --json | jq -r .plugin.last_exit | grep -q heartbeat || fail "cause not reported: $(virtioctl status "$con" --json | jq -c .plugin)"
journalctl -u virtiod --no-pager | grep -q "missed its heartbeat" || fail "no journal entry for the missed heartbeat"
echo "silent plugin killed and restarted $waited ms after SIGSTOP (HeartbeatSec=6)"
