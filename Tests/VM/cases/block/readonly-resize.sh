# A read-only disk (QEMU read-only node: VIRTIO_BLK_F_RO) is exported
# read-only: writes are refused, reads work. A writable disk grown with
# QMP block_resize (a config interrupt) makes /dev/nbdN follow. Over ublk
# (the backports kernel, 6.12) the kernel cannot resize a started disk
# (UBLK_U_CMD_UPDATE_SIZE was added upstream later): the disk keeps its size, keeps
# working, and virtioctl status and the journal say so.
source /payload/cases/lib.sh
mark=$(dmesg_lines)
ro="" grow=""
cleanup() { [ -z "$ro" ] || remove_disk ro0 "$ro"; [ -z "$grow" ] || remove_disk grow0 "$grow"; stop_virtiod; }
trap cleanup EXIT
start_virtiod
ro=$(hot_add_disk ro0 blkro hp0 ro0)
dev=$(claim_disk "$ro" ro0)
virtioctl status "$ro" --json | jq -e '.driver.negotiated.names | index("RO")' >/dev/null || fail "RO not negotiated"
[ "$(blockdev --getro "$dev")" = 1 ] || fail "$dev is not read-only"
! dd if=/dev/zero of="$dev" bs=4096 count=1 oflag=direct 2>/tmp/ro-dd || fail "a write to the read-only disk succeeded"
echo "write to the read-only $dev refused: $(tail -n 1 /tmp/ro-dd)"
dd if="$dev" of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null || fail "reading the read-only disk failed"
[ "$(virtioctl status "$ro" --json | jq -r '.endpoints[0].details.read_only')" = yes ] || fail "status does not say read-only"

grow=$(hot_add_disk grow0 blkgrow hp1 grow0)
gdev=$(claim_disk "$grow" grow0)
[ "$(blockdev --getsize64 "$gdev")" -eq $((64 << 20)) ] || fail "$gdev is $(blockdev --getsize64 "$gdev") bytes before the resize"
dd if=/dev/urandom of=/tmp/grow-head bs=64k count=16 2>/dev/null
dd if=/tmp/grow-head of="$gdev" bs=64k oflag=direct 2>/dev/null || fail "write before the resize failed"
host_step block_resize '{"node-name": "blkgrow", "size": 134217728}' >/dev/null || fail "block_resize failed"
if [ "$DISK_ENDPOINT" = ublk ]; then
    wait_for "virtioctl status $grow --json | jq -e '.endpoints[0].details.size_not_followed' >/dev/null" 30 \
        || fail "status does not say the new size is not followed: $(virtioctl status "$grow" --json | jq -c '.endpoints[0].details')"
    echo "block_resize 64 → 128 MiB over ublk: $(virtioctl status "$grow" --json | jq -r '.endpoints[0].details.size_not_followed')"
    [ "$(blockdev --getsize64 "$gdev")" -eq $((64 << 20)) ] || fail "$gdev changed size: $(blockdev --getsize64 "$gdev")"
    journalctl -u virtiod --no-pager -o cat | grep -q "cannot resize a started disk" || fail "the journal does not say the size is not followed"
    cmp <(head -c $((1 << 20)) "$gdev") /tmp/grow-head || fail "data changed after the resize"
else
wait_for "[ \$(blockdev --getsize64 $gdev) -eq $((128 << 20)) ]" 30 \
    || fail "$gdev did not grow: $(blockdev --getsize64 "$gdev") bytes; device capacity $(virtioctl status "$grow" --json | jq .driver.config.capacity)"
echo "block_resize 64 → 128 MiB: $gdev is $(blockdev --getsize64 "$gdev") bytes"
[ "$(virtioctl status "$grow" --json | jq -r '.endpoints[0].details.size_bytes')" = $((128 << 20)) ] || fail "status size not updated"
dd if=/dev/zero of="$gdev" bs=64k seek=$(( (100 << 20) / 65536 )) count=16 oflag=direct 2>/dev/null || fail "write beyond the old end failed"
cmp <(head -c $((1 << 20)) "$gdev") /tmp/grow-head || fail "data before the resize changed"
fi
echo "kernel log about the refused write: $(io_errors "$mark" | head -n 1)"
