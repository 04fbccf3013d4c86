# 6 MiB of random data each way through a port at once — host → here through
# the port's chardev socket, here → host through its terminal — while
# `virtioctl reload console` runs twice and `systemctl restart virtiod`
# once: both sha256 equal, nothing lost or doubled.
# case-timeout: 600
source /payload/cases/lib.sh
start_console
trap stop_virtiod EXIT
p="$PORTS_DIR/org.virtiod.port1"
n=$((6 * 1024 * 1024))
head -c $n /dev/urandom > /tmp/out
host_step x-port-connect '{"port": "port1"}' >/dev/null || fail "cannot connect to port1's chardev"
p1=$(port_id org.virtiod.port1)
wait_for "[ \"\$(port_field $p1 host)\" = connected ]" 15 || fail "host side not connected"
head -c $n < "$p" > /tmp/in &
reader=$!
wait_for "[ \"\$(port_field $p1 terminal)\" = open ]" 15 || fail "the reader's open was not seen"
host_step x-port-recv "{\"port\": \"port1\", \"bytes\": $n}" >/dev/null || fail "x-port-recv"
# Both ways paced at about 320 KiB/s (~19 s), so the reloads and the restart
# fall inside the streams (unpaced, 10 MiB pass in ~3 s under TCG).
host_step x-port-send "{\"port\": \"port1\", \"bytes\": $n, \"seed\": 7, \"rate\": 327680}" >/dev/null || fail "x-port-send"
for i in $(seq 0 47); do dd if=/tmp/out bs=128k skip=$i count=1 status=none; sleep 0.25; done > "$p" &
writer=$!
pid0=$(virtioctl status "$con" --json | jq .plugin.pid)
start=$(date +%s)
progress() { host_step x-port-result '{"port": "port1"}' | jq -c '[.sent.bytes, .received.bytes]'; }
sleep 3; echo "at $(progress): reload"; virtioctl reload console > /tmp/r1 2>&1 || fail "reload 1: $(cat /tmp/r1)"
sleep 3; at=$(progress); echo "at $at: restart"
[ "$(echo "$at" | jq "max < $n")" = true ] || fail "the streams were done before the restart ($at): nothing was tested"
systemctl restart virtiod || fail "systemctl restart virtiod failed: $(journalctl -u virtiod -n 60 --no-pager | cut -c1-300)"
wait_state "$con" running 30
sleep 3; echo "at $(progress): reload"; virtioctl reload console > /tmp/r2 2>&1 || fail "reload 2: $(cat /tmp/r2)"
wait_for "! kill -0 $reader 2>/dev/null && ! kill -0 $writer 2>/dev/null && [ \"\$(host_step x-port-result '{\"port\": \"port1\"}' | jq '.sent.done and .received.done')\" = true ]" 400 \
    || fail "the streams did not finish: $(progress) of $n, here $(stat -c %s /tmp/in) bytes in"
secs=$(( $(date +%s) - start ))
r=$(host_step x-port-result '{"port": "port1"}')
[ "$(sha256sum < /tmp/in | cut -d' ' -f1)" = "$(echo "$r" | jq -r .sent.sha256)" ] || fail "host → here differs: $(stat -c %s /tmp/in) bytes in"
[ "$(sha256sum < /tmp/out | cut -d' ' -f1)" = "$(echo "$r" | jq -r .received.sha256)" ] || fail "here → host differs ($(echo "$r" | jq .received.bytes) bytes at the host)"
[ "$(virtioctl status "$con" --json | jq .plugin.pid)" != "$pid0" ] || fail "the plugin process is the one before the reloads"
echo "6 MiB each way in $secs s (two reloads, a restart of virtiod): sha256 equal both ways"
