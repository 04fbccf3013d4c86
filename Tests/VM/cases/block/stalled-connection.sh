# The kernel gives up on an NBD connection: the block plugin is frozen
# (SIGSTOP) for longer than the 8 s request timeout while reads wait on both
# connections of a two-queue disk. The kernel shuts the connections down and
# holds the requests; once the plugin runs again it drops what it had read
# from them, asks for fresh connections, the supervisor hands the kernel new
# ones (RECONFIGURE) — and the reads finish with the right data, no I/O
# error, the plugin never restarted; a reload afterwards hands the fresh
# connections on.
source /payload/cases/lib.sh
disk=""; pid=""
cleanup() { [ -z "$pid" ] || kill -CONT "$pid" 2>/dev/null || true; [ -z "$disk" ] || remove_disk st0 "$disk"; stop_virtiod; }
trap cleanup EXIT
start_virtiod
disk=$(hot_add_disk st0 blkfio hp0 st0 ', "num-queues": 2')
dev=$(claim_disk "$disk" st0)
[ "$(virtioctl status "$disk" --json | jq -r '.endpoints[0].details.connections')" = 2 ] || fail "expected 2 NBD connections"
head -c $((8 << 20)) /dev/urandom > /tmp/st-data
dd if=/tmp/st-data of="$dev" bs=1M oflag=direct conv=fsync status=none || fail "writing the pattern failed"
pid=$(virtioctl status "$disk" --json | jq .plugin.pid)
lines=$(dmesg_lines)
kill -STOP "$pid"
# One reader per CPU: each hardware queue (connection) gets a request.
rm -f /tmp/st-read0 /tmp/st-read1
for cpu in 0 1; do
    (taskset -c $cpu dd if="$dev" bs=1M count=4 skip=$((cpu * 4)) iflag=direct status=none | sha256sum | cut -d' ' -f1 > /tmp/st-read$cpu) &
done
sleep 11
kill -CONT "$pid"; stopped=$pid; pid=""
start=$(date +%s%N)
wait_for "[ -s /tmp/st-read0 ] && [ -s /tmp/st-read1 ]" 60 || fail "the reads did not finish within 60 s of SIGCONT; dmesg: $(dmesg | tail -n +$((lines + 1)) | tail -n 8)"
wait
echo "reads finished $(( ($(date +%s%N) - start) / 1000000 )) ms after SIGCONT"
got=$( (dd if=/tmp/st-data bs=1M count=4 status=none | sha256sum; dd if=/tmp/st-data bs=1M skip=4 status=none | sha256sum) | cut -d' ' -f1 | tr '\n' ' ')
[ "$(cat /tmp/st-read0) $(cat /tmp/st-read1) " = "$got" ] || fail "data read after the stall differs: $(cat /tmp/st-read0 /tmp/st-read1) vs $got"
new=$(dmesg | tail -n +$((lines + 1)))
echo "$new" | grep -E "nbd" | tail -n 6 | sed 's/^/kernel: /'
echo "$new" | grep -q "Connection timed out" || fail "the kernel did not time a connection out: the case did not test anything"
errors=$(io_errors "$lines")
[ -z "$errors" ] || fail "kernel I/O errors: $errors"
s=$(virtioctl status "$disk" --json)
[ "$(echo "$s" | jq .plugin.pid)" = "$stopped" ] || fail "the plugin was restarted ($stopped → $(echo "$s" | jq .plugin.pid))"
[ "$(echo "$s" | jq -r .state)" = running ] || fail "disk state $(echo "$s" | jq -r .state)"
lost=$(disk_counter "$disk" connections_lost)
echo "connections lost: $lost, requests dropped: $(disk_counter "$disk" dropped), closed now: $(echo "$s" | jq .driver.config.connections_closed)"
[ "$lost" -ge 1 ] || fail "no connection counted as lost: $(echo "$s" | jq -c '[.driver.queues[].counters]')"
[ "$(echo "$s" | jq .driver.config.connections_closed)" -eq 0 ] || fail "a connection is still closed: $(echo "$s" | jq -c .driver.config)"
journalctl -u virtiod --no-pager -o cat | grep -q "a fresh one replaces it" || fail "the supervisor logged no fresh connection"
# A reload passes the fresh connections to the successor (the fd store
# holds them now), and the disk goes on: a verified write and read.
virtioctl reload block >/dev/null || fail "reload after the renewal failed: $(virtioctl status "$disk" --json | jq -r .plugin.last_reload)"
[ "$(virtioctl status "$disk" --json | jq .plugin.pid)" != "$stopped" ] || fail "the reload did not replace the plugin"
head -c $((1 << 20)) /dev/urandom > /tmp/st-more
dd if=/tmp/st-more of="$dev" bs=1M seek=2 oflag=direct conv=fsync status=none || fail "write after the stall failed"
[ "$(dd if="$dev" bs=1M skip=2 count=1 iflag=direct status=none | sha256sum)" = "$(sha256sum < /tmp/st-more)" ] || fail "read-back after the stall differs"
