# The disk keeps working while its driver is replaced: fio random writes
# with crc32c verification (4–64 KiB, queue depth 16, 2 jobs on disjoint
# halves) run while the block plugin is reloaded 3 times, virtiod is
# restarted once and the plugin is killed with SIGKILL once. fio must end
# with 0 I/O errors and 0 verify failures, and the kernel log must hold no
# I/O error. The longest I/O latency after each event is printed (fio's
# per-I/O latency log).
source /payload/cases/lib.sh
mark=$(dmesg_lines)
disk=""
cleanup() {
    if [ -n "${fio_pid:-}" ]; then
        kill "$fio_pid" 2>/dev/null
        echo "fio (stopped): $(grep -c error /tmp/fio.err) error lines, first: $(grep -m1 error /tmp/fio.err)"
        journalctl -u virtiod -u 'virtiod-block-*' --no-pager -o cat | grep -v "^$" | tail -n 12
    fi
    [ -z "$disk" ] || remove_disk fio0 "$disk"
    stop_virtiod
    if [ -n "${FAIL_REASON:-}" ]; then echo "$FAIL_REASON"; fi
}
trap cleanup EXIT
start_virtiod
disk=$(hot_add_disk fio0 blkfio hp0 fio0)
dev=$(claim_disk "$disk" fio0)
rm -f /tmp/fio-lat*
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
start=$(now_ms)
fio --name=verify --filename="$dev" --direct=1 --ioengine=libaio --rw=randwrite --bsrange=4k-64k --iodepth=16 \
    --numjobs=2 --size=120M --offset_increment=128M --verify=crc32c --verify_backlog=64 --verify_fatal=1 \
    --time_based --runtime=70 --write_lat_log=/tmp/fio-lat --log_avg_msec=0 --output-format=json --output=/tmp/fio.json 2> /tmp/fio.err &
fio_pid=$!
events=()
event() { events+=("$1:$(( $(now_ms) - start ))"); echo "event $1 at uptime $(cut -d' ' -f1 /proc/uptime)" >> /tmp/fio-events; }
rm -f /tmp/fio-events
sleep 6
for i in 1 2 3; do
    event "reload$i"
    virtioctl reload block > /tmp/reload.out 2>&1 || fail "reload $i failed: $(cat /tmp/reload.out)"
    sleep 5
    # The export's state after each event (for a stall's cause).
    echo "after reload$i: plugin $(virtioctl status "$disk" --json | jq -c '{pid: .plugin.pid, ep: (.endpoints[0].details | {state, server_pid})}')" >> /tmp/fio-events
done
event restart
systemctl restart virtiod || fail "systemctl restart virtiod failed"
wait_state "$disk" running 30
sleep 5
event kill
pid=$(virtioctl status "$disk" --json | jq .plugin.pid)
kill -9 "$pid"
wait_for "[ \"\$(virtioctl status $disk --json | jq .plugin.restarts)\" -ge 1 ]" 30 || fail "the block plugin was not restarted"
wait_state "$disk" running 60
rc=0; wait "$fio_pid" || rc=$?
fio_pid=""
[ -s /tmp/fio.json ] || fail "fio wrote no report (exit $rc)"
# fio may print notes before its JSON report.
sed -n '1,/^{/p' /tmp/fio.json | grep -v '^{' | head -n 5 || true
sed -n '/^{/,$p' /tmp/fio.json > /tmp/fio-report.json
jq -e . /tmp/fio-report.json >/dev/null || fail "fio's report is not JSON: $(head -c 300 /tmp/fio.json)"
errs=$(jq '[.jobs[].error] | add' /tmp/fio-report.json)
writes=$(jq '[.jobs[].write.total_ios] | add' /tmp/fio-report.json)
reads=$(jq '[.jobs[].read.total_ios] | add' /tmp/fio-report.json)
echo "fio: exit $rc, $writes writes, $reads verify reads, error $errs; $(grep -c "io_u error" /tmp/fio.err) I/O error lines, first: $(grep -m1 "io_u error" /tmp/fio.err)"
# Longest completion latency among I/Os finishing between an event and the
# next one (15 s after the last); log times are ms since the job began.
n=${#events[@]}
for i in "${!events[@]}"; do
    name=${events[$i]%%:*}; at=${events[$i]#*:}
    if [ $((i + 1)) -lt "$n" ]; then until=${events[$((i + 1))]#*:}; else until=$((at + 15000)); fi
    worst=$(cat /tmp/fio-lat_lat.*.log 2>/dev/null | awk -F', *' -v a="$at" -v b="$until" '$1 >= a && $1 < b && $2 > m { m = $2 } END { printf "%d", m / 1000000 }')
    echo "$name at $((at / 1000)) s: longest I/O $worst ms"
done
if [ "$rc" -ne 0 ] || [ "$errs" -ne 0 ] || { [ "$DISK_ENDPOINT" = ublk ] && [ "$(journalctl -u virtiod --no-pager -o cat | grep -c "recovery started")" -lt 4 ]; }; then
    cat /tmp/fio-events
    journalctl -u virtiod -u 'virtiod-block-*' --no-pager -o short-monotonic | grep -vi "heartbeat" | tail -n 60
    dmesg | tail -n 15
fi
[ "$rc" -eq 0 ] && [ "$errs" -eq 0 ] || fail "fio exit $rc, error $errs: $(jq -c '[.jobs[] | {error, verify_errors: .verify_errors}]' /tmp/fio-report.json 2>/dev/null)"
[ "$writes" -gt 100 ] && [ "$reads" -gt 100 ] || fail "too little I/O: $writes writes, $reads verify reads"
if [ "$DISK_ENDPOINT" = nbd ]; then
    echo "kernel nbd lines: $(dmesg | tail -n +$((mark + 1)) | grep -c 'timed out') request timeouts, $(dmesg | tail -n +$((mark + 1)) | grep -c 'reconnected socket') reconnected connections"
    # What the kernel's nbd said, by second of uptime, beside the events (for a stall's cause).
    echo "$(tr '\n' ';' < /tmp/fio-events) nbd: $(dmesg | tail -n +$((mark + 1)) | grep nbd | sed -E 's/^\[ *([0-9]+)\.[0-9]+\] block nbd[0-9]+: /\1s /; s/ \(.*//; s/ on req.*//; s/Connection timed out, retrying/timeout/' | uniq -c | tr -s ' ' | tr '\n' ';')"
fi
echo "virtiod: $(journalctl -u virtiod -u 'virtiod-block-*' --no-pager -o short-monotonic | grep -E "fresh connection|recovery started|again; waiting|restarting in|closed by|rolled back|failed" | sed -E 's/^\[ *([0-9]+)\.[0-9]+\] [^:]*: /\1s /' | cut -c1-90 | tr '\n' ';')"
errors=$(io_errors "$mark")
[ -z "$errors" ] || fail "kernel I/O errors: $errors"
if [ "$DISK_ENDPOINT" = ublk ]; then
    # Each reload and the kill: the kernel quiesced the disk and the next plugin recovered it.
    n=$(journalctl -u virtiod --no-pager -o cat | grep -c "recovery started")
    [ "$n" -ge 4 ] || fail "$n ublk recoveries in the journal, expected 4 (3 reloads, 1 kill)"
else
    journalctl -u virtiod --no-pager -o cat | grep -q "fresh connection" || fail "no fresh NBD connections after the kill in the journal"
fi
