# A plugin built outside virtiod's tree (Examples/rng: its own Package.swift,
# virtiod's SDK by path), installed the documented way (`make install` into
# /usr/local: the executable and /usr/local/lib/virtiod/plugins/rng.plugin;
# staged on the host, copied onto / here) claims the guest's virtio-rng and
# feeds the kernel's random pool: its byte counter in `virtioctl status`
# grows, and so does the kernel's count of writes to the pool (a kprobe on
# random_write_iter, /dev/random's write). `virtioctl reload rng` works.
source /payload/cases/lib.sh
trace=/sys/kernel/tracing
cleanup() {
    echo 0 > $trace/events/kprobes/enable 2>/dev/null || true
    echo '-:virtiod_rng_write' >> $trace/kprobe_events 2>/dev/null || true
    stop_virtiod
    rm -rf /usr/local/libexec/virtiod /usr/local/lib/virtiod
}
trap cleanup EXIT
[ -d /payload/extra/rng/usr/local ] || fail "the example plugin was not staged (make vm-stage)"
cp -a /payload/extra/rng/. /
[ -x /usr/local/libexec/virtiod/virtiod-rng ] && [ -f /usr/local/lib/virtiod/plugins/rng.plugin ] || fail "install incomplete"
rng=$(virtio_functions 1044)
[ -n "$rng" ] || fail "no virtio-rng device"
[ "$(driver_of "$rng")" = virtio-pci ] || fail "rng is on $(driver_of "$rng") before the claim"

mountpoint -q $trace || mount -t tracefs tracefs $trace
echo 'p:virtiod_rng_write random_write_iter' >> $trace/kprobe_events || fail "cannot place a kprobe on random_write_iter"
echo 1 > $trace/events/kprobes/virtiod_rng_write/enable
hits() { awk '$1 == "virtiod_rng_write" { print $2 }' $trace/kprobe_profile; }

start_virtiod "[Device]
Type=rng
Claim=yes
Option=rate=8192"
wait_state "$rng" running 60
virtioctl plugins --json | jq -e '.[] | select(.name == "rng") | .manifest == "/usr/local/lib/virtiod/plugins/rng.plugin"
    and .executable == "/usr/local/libexec/virtiod/virtiod-rng" and .version == "1.0.0" and .stub == false
    and .endpoints == ["random"] and .devices == ["'"$rng"'"]' >/dev/null \
    || fail "plugins: $(virtioctl plugins --json | jq -c '.[] | select(.name == "rng")')"
counter() { virtioctl status "$rng" --json | jq '.driver.queues[0].counters.bytes'; }
b0=$(counter) h0=$(hits)
sleep 3
b1=$(counter) h1=$(hits)
echo "rng: $b0 → $b1 bytes fed; kernel pool writes (kprobe hits) $h0 → $h1"
[ "$b1" -gt "$b0" ] || fail "no bytes fed in 3 s ($b0 → $b1)"
# Each 256-byte buffer the device filled is one write(2) to /dev/random. The
# byte counts are the plugin's reports, taken a moment apart from the kprobe
# counts: at least half the writes they imply must have reached the kernel.
[ $((h1 - h0)) -ge $(( (b1 - b0) / 512 )) ] && [ $((h1 - h0)) -gt 0 ] \
    || fail "the kernel saw $((h1 - h0)) writes to its pool for $((b1 - b0)) bytes fed"
[ $((b1 - b0)) -le $((8192 * 5)) ] || fail "fed $((b1 - b0)) bytes in 3 s at rate=8192"
virtioctl status "$rng" --json | jq -e '.driver.config.feeds == "/dev/random" and .driver.stub == false' >/dev/null \
    || fail "status: $(virtioctl status "$rng" --json | jq -c .driver.config)"

p0=$(virtioctl status "$rng" --json | jq .plugin.pid)
virtioctl reload rng > /tmp/rng-reload 2>&1 || fail "reload failed: $(cat /tmp/rng-reload)"
cat /tmp/rng-reload
s=$(virtioctl status "$rng" --json)
echo "$s" | jq -e --argjson p0 "$p0" '.state == "running" and .plugin.pid != $p0 and .plugin.reloads == 1' >/dev/null \
    || fail "after the reload: $(echo "$s" | jq -c '{state, plugin}')"
b2=$(counter)
[ "$b2" -ge "$b1" ] || fail "the byte counter went back across the reload ($b1 → $b2)"
sleep 2.5
b3=$(counter)
[ "$b3" -gt "$b2" ] || fail "no bytes fed after the reload ($b2 → $b3)"
echo "after the reload: $b2 → $b3 bytes"
