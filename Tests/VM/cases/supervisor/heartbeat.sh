# A plugin that hangs (SIGSTOP: alive but silent) misses its heartbeat, is
# killed and restarted, and the cause shows in virtioctl status.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
con=$(virtio_functions 1043)
start_virtiod "[Device]
Type=console
Claim=yes"
wait_state "$con" running 60
old=$(virtioctl status "$con" --json | jq .plugin.pid)
kill -STOP "$old"
wait_for "[ \"\$(virtioctl list --json | jq -r '.[] | select(.address == \"$con\") | .plugin.restarts')\" -ge 1 ]" 45 \
    || fail "a silent plugin was not restarted within 45 s: $(virtioctl list --json | jq -c ".[] | select(.address == \"$con\") | .plugin")"
! kill -0 "$old" 2>/dev/null || fail "the hung plugin $old still exists"
wait_state "$con" running 60
virtioctl status "$con" --json | jq -r .plugin.lastExit | grep -q heartbeat || fail "cause not reported: $(virtioctl status "$con" --json | jq -c .plugin)"
journalctl -u virtiod --no-pager | grep -q "missed its heartbeat" || fail "no journal entry for the missed heartbeat"
