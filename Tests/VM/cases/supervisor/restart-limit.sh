# A plugin that keeps failing is restarted with back-off until the device
# rule's RestartLimitBurst= failures within RestartLimitIntervalSec=; then
# the device stays failed, says why, and `virtioctl restart DEVICE` tries
# again in place (failures counted afresh).
source /payload/cases/lib.sh
trap stop_virtiod EXIT
start_virtiod "[Device]
Type=console
Claim=yes
RestartLimitBurst=2
RestartLimitIntervalSec=60"
con=$(virtio_functions 1043)
wait_state "$con" running 60
p=$(virtioctl status "$con" --json | jq .plugin.pid)
kill -9 "$p"
wait_for "[ \"\$(virtioctl status $con --json | jq .plugin.restarts)\" = 1 ]" 20 || fail "not restarted after the first kill"
wait_state "$con" running 60
p=$(virtioctl status "$con" --json | jq .plugin.pid)
kill -9 "$p"
wait_state "$con" failed 20
sleep 3
s=$(virtioctl status "$con" --json)
echo "$s" | jq -e '.state == "failed" and .plugin.pid == null' >/dev/null || fail "after 2 failures: $(echo "$s" | jq -c '{state, pid: .plugin.pid}')"
echo "$s" | jq -r .reason | grep -q "2 failures within 60 s (RestartLimitBurst=2).*virtioctl restart" || fail "reason: $(echo "$s" | jq -r .reason)"
echo "$s" | jq -r .reason
virtioctl restart "$con" >/dev/null || fail "virtioctl restart failed"
wait_state "$con" running 60
echo "after virtioctl restart: $(vstate "$con")"
rc=0; setpriv --reuid=nobody --regid=nogroup --clear-groups virtioctl restart "$con" >/dev/null 2>&1 || rc=$?
[ $rc -eq 5 ] || fail "restart as nobody exited $rc"
