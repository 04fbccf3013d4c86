# A disk claimed by virtiod is a real disk: mkfs.ext4 on /dev/nbdN or /dev/ublkbN (found
# through /dev/disk/by-id/virtiod-SERIAL), a 100 MB file and a tree of small
# files written, unmounted, fsck -f clean, remounted, every sha256 equal;
# fstrim reaches the device as DISCARD and blkdiscard -z as WRITE_ZEROES
# (the plugin's counters); no kernel I/O error. The plugin is an I/O
# flusher with no capability left.
source /payload/cases/lib.sh
mark=$(dmesg_lines)
disk=""
cleanup() { umount /mnt/vfs 2>/dev/null || true; [ -z "$disk" ] || remove_disk fs0 "$disk"; stop_virtiod; }
trap cleanup EXIT
start_virtiod
disk=$(hot_add_disk fs0 blkfs hp0 fs0)
dev=$(claim_disk "$disk" fs0)
# Requests up to 512 KiB over nbd (which starts at 128 KiB: the supervisor
# raised it at connect); over ublk one slot's 128 KiB (one device request each).
msk=$(cat /sys/block/"${dev#/dev/}"/queue/max_sectors_kb)
want=512; [ "$DISK_ENDPOINT" = ublk ] && want=128
[ "$msk" = "$want" ] || fail "max_sectors_kb of $dev is $msk, expected $want"
# Over ublk the request timeout is 1 s (not 30): after a reload it is what
# quiesces a queue whose every tag the old plugin held.
if [ "$DISK_ENDPOINT" = ublk ]; then
    t=$(cat /sys/block/"${dev#/dev/}"/queue/io_timeout)
    [ "$t" = 1000 ] || fail "io_timeout of $dev is $t ms, expected 1000"
fi
echo "disk $disk exported as $dev ($(blockdev --getsize64 "$dev") bytes)"
[ "$(blockdev --getsize64 "$dev")" -eq $((384 << 20)) ] || fail "$dev is $(blockdev --getsize64 "$dev") bytes, expected 384 MiB"
# The plugin marked itself an I/O flusher and kept no capability.
pid=$(virtioctl status "$disk" --json | jq .plugin.pid)
journalctl -u 'virtiod-block-*' --no-pager -o cat | grep -q "running as uid [0-9]*, no-new-privileges, I/O flusher" \
    || fail "the block plugin is not an I/O flusher: $(journalctl -u 'virtiod-block-*' --no-pager -o cat | grep -m1 'running as')"
grep -Eq "^CapPrm:\s+0+$" "/proc/$pid/status" && grep -Eq "^CapEff:\s+0+$" "/proc/$pid/status" && grep -Eq "^CapAmb:\s+0+$" "/proc/$pid/status" \
    || fail "the block plugin kept capabilities: $(grep ^Cap "/proc/$pid/status" | tr '\n' ' ')"
virtioctl status "$disk" | grep -q "Endpoints: $dev ($DISK_ENDPOINT)" || fail "virtioctl status does not name $dev: $(virtioctl status "$disk" | grep -A2 Endpoints | tr '\n' ' ')"

mkfs.ext4 -q -F "$dev" || fail "mkfs.ext4 failed"
mkdir -p /mnt/vfs
mount "$dev" /mnt/vfs || fail "mount failed"
t0=$(date +%s%N)
head -c $((100 << 20)) /dev/urandom > /mnt/vfs/big || fail "writing the 100 MB file failed"
mkdir -p /mnt/vfs/tree
for d in 1 2 3 4 5; do
    mkdir -p "/mnt/vfs/tree/d$d"
    for f in $(seq 1 40); do head -c $((RANDOM % 9000 + 1)) /dev/urandom > "/mnt/vfs/tree/d$d/f$f"; done
done
sync
t1=$(date +%s%N)
echo "100 MB file + 200 small files written and synced in $(( (t1 - t0) / 1000000 )) ms"
(cd /mnt/vfs && find . -type f -print0 | sort -z | xargs -0 sha256sum) > /tmp/fs-sums
[ "$(wc -l < /tmp/fs-sums)" -eq 201 ] || fail "expected 201 files, summed $(wc -l < /tmp/fs-sums)"
umount /mnt/vfs || fail "umount failed"
e2fsck -f -n "$dev" > /tmp/fsck.out 2>&1 || fail "fsck -f is not clean: $(tail -n 3 /tmp/fsck.out)"
echo 3 > /proc/sys/vm/drop_caches
mount "$dev" /mnt/vfs || fail "remount failed"
(cd /mnt/vfs && sha256sum --quiet -c /tmp/fs-sums) || fail "checksums differ after remount"

d0=$(disk_counter "$disk" discards)
fstrim /mnt/vfs || fail "fstrim failed"
d1=$(disk_counter "$disk" discards)
echo "fstrim: DISCARD requests $d0 → $d1"
[ "$d1" -gt "$d0" ] || fail "fstrim sent no DISCARD to the device"
umount /mnt/vfs
z0=$(disk_counter "$disk" write_zeroes)
blkdiscard -z -o 0 -l $((8 << 20)) "$dev" || fail "blkdiscard -z failed"
z1=$(disk_counter "$disk" write_zeroes)
echo "blkdiscard -z of 8 MiB: WRITE_ZEROES requests $z0 → $z1"
[ "$z1" -gt "$z0" ] || fail "blkdiscard -z sent no WRITE_ZEROES to the device"
[ "$(head -c $((8 << 20)) "$dev" | tr -d '\0' | wc -c)" -eq 0 ] || fail "the zeroed range does not read back as zeroes"
errors=$(io_errors "$mark")
[ -z "$errors" ] || fail "kernel I/O errors: $errors"
virtioctl status "$disk" --json | jq -e '[.driver.queues[].counters.errors] | add == 0' >/dev/null \
    || fail "the plugin counted errors: $(virtioctl status "$disk" --json | jq -c '[.driver.queues[].counters]')"
