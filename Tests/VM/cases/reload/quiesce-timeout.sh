# A plugin that does not quiesce (here: stopped with SIGSTOP just before the
# reload) cannot leave its device paused: after 5 s the reload is rolled
# back — the successor is killed, the old process told to resume — virtioctl
# says what happened, and once the old process runs again so does traffic.
# virtiod answers other requests all along.
source /payload/cases/lib.sh
start_nic_with_twin
old=$(virtioctl status "$net" --json | jq .plugin.pid)
kill -STOP "$old"
s=$(date +%s%N)
( rc=0; virtioctl reload net > /tmp/qt-reload 2>&1 || rc=$?; echo $rc > /tmp/qt-rc ) &
sleep 1
l0=$(date +%s%N); virtioctl list >/dev/null || fail "list failed during the reload"
echo "virtioctl list during the stuck reload: $(( ($(date +%s%N) - l0) / 1000000 )) ms"
wait_for "[ -s /tmp/qt-rc ]" 30 || fail "the reload did not end within 30 s"
echo "reload ended after $(( ($(date +%s%N) - s) / 1000000 )) ms: $(cat /tmp/qt-reload)"
[ "$(cat /tmp/qt-rc)" = 1 ] || fail "virtioctl reload exited $(cat /tmp/qt-rc)"
grep -q "did not quiesce within 5 s; rolled back" /tmp/qt-reload || fail "virtioctl did not say what happened: $(cat /tmp/qt-reload)"
kill -CONT "$old"
wait_for "ping -c 1 -W 1 10.77.0.2" 10 || fail "no traffic after the old process continued"
st=$(virtioctl status "$net" --json)
echo "$st" | jq -e --argjson old "$old" '.state == "running" and .plugin.pid == $old' >/dev/null \
    || fail "after the roll-back: $(echo "$st" | jq -c '{state, plugin}')"
echo "$st" | jq -r .plugin.last_reload | grep -q "did not quiesce" || fail "status does not say what happened: $(echo "$st" | jq -c .plugin)"
[ "$(pgrep -c -f '^/usr/libexec/virtiod/virtiod-net')" = 1 ] || fail "plugin processes left: $(pgrep -af virtiod-net)"
