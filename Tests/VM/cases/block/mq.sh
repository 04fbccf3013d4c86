# A disk with num-queues=4 gets one NBD connection per request queue (the
# kernel makes a hardware queue per connection, at most one per CPU), or
# over ublk one ublk queue per request queue (at most one per CPU, so the
# device's other queues stay unused); fio with a job per CPU lands I/O on
# more than one of them.
source /payload/cases/lib.sh
disk=""
cleanup() { [ -z "$disk" ] || remove_disk mq0 "$disk"; stop_virtiod; }
trap cleanup EXIT
start_virtiod
disk=$(hot_add_disk mq0 blkfio hp0 mq0 ', "num-queues": 4')
dev=$(claim_disk "$disk" mq0)
s=$(virtioctl status "$disk" --json)
want=$(( $(nproc) < 4 ? $(nproc) : 4 ))
if [ "$DISK_ENDPOINT" = ublk ]; then
    [ "$(echo "$s" | jq '.driver.queues | length')" -eq "$want" ] || fail "expected $want request queues: $(echo "$s" | jq -c '[.driver.queues[].name]')"
    [ "$(echo "$s" | jq -r '.endpoints[0].details.queues')" = "$want" ] || fail "expected $want ublk queues: $(echo "$s" | jq -c .endpoints)"
else
    [ "$(echo "$s" | jq '.driver.queues | length')" -eq 4 ] || fail "expected 4 request queues: $(echo "$s" | jq -c '[.driver.queues[].name]')"
    [ "$(echo "$s" | jq -r '.endpoints[0].details.connections')" = 4 ] || fail "expected 4 NBD connections: $(echo "$s" | jq -c .endpoints)"
fi
# blk-mq makes at most one hardware queue per CPU: connections beyond that stay idle.
hw=$(ls -d /sys/block/"${dev#/dev/}"/mq/*/ | wc -l)
[ "$hw" -eq "$want" ] || fail "$dev has $hw hardware queues, expected $want ($(nproc) CPUs)"
fio --name=mq --filename="$dev" --direct=1 --ioengine=libaio --rw=randread --bs=4k --iodepth=8 --numjobs=2 \
    --cpus_allowed=0,1 --cpus_allowed_policy=split --runtime=6 --time_based --group_reporting --output=/tmp/mq-fio >/dev/null \
    || fail "fio failed: $(tail -n 5 /tmp/mq-fio)"
per=$(virtioctl status "$disk" --json | jq -c '[.driver.queues[].counters.reads]')
echo "reads per request queue: $per"
[ "$(echo "$per" | jq '[.[] | select(. > 0)] | length')" -ge 2 ] || fail "I/O landed on fewer than 2 queues: $per"
