# A 300 MB copy onto the share keeps going while the 9p plugin is reloaded
# twice (`virtioctl reload`) and virtiod itself is restarted once: no
# error, the copy's sha256 equal to the source's, the mount answering
# throughout (every look at it bounded by a timeout) and never remounted.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
start_share
m=$share
size=$((300 * 1024 * 1024))
head -c $size /dev/urandom > /tmp/src || fail "no source file"
want=$(sha256sum < /tmp/src | cut -d' ' -f1)
rm -f "$m/big"
t0=$(date +%s.%N)
( cp /tmp/src "$m/big"; echo $? > /tmp/cp.rc ) &
copier=$!
# Each step: wait until the copy has grown by 10% or more, then act.
progress() { timeout 20 stat -c %s "$m/big" 2>/dev/null || echo hung; }
step=0
act() {
    local before after
    before=$(progress)
    [ "$before" != hung ] || fail "the mount hung before $1"
    wait_for "[ \"\$(timeout 20 stat -c %s $m/big)\" -gt $((before + size / 10)) ] || [ -e /tmp/cp.rc ]" 120 \
        || fail "the copy made no progress before $1 (at $before bytes)"
    now=$(progress)
    [ -e /tmp/cp.rc ] && echo "VIRTIOD-LOG 9p reload: the copy had ended before $1" \
        || echo "VIRTIOD-LOG 9p reload: $1 at $((now / 1048576)) MiB"
    shift
    "$@" > /tmp/act.out 2>&1 || fail "$* failed: $(tail -n 3 /tmp/act.out)"
    after=$(progress)
    [ "$after" != hung ] || fail "the mount hung after $*"
    step=$((step + 1))
}
pid0=$(virtioctl status "$nine" --json | jq .plugin.pid)
act "reload 1" virtioctl reload "$nine"
act "reload 2" virtioctl reload "$nine"
act "restart of virtiod" systemctl restart virtiod
wait_state "$nine" running 60
wait "$copier"
t1=$(date +%s.%N)
[ "$(cat /tmp/cp.rc)" = 0 ] || fail "cp failed (exit $(cat /tmp/cp.rc)); dmesg: $(dmesg | tail -n 3)"
got=$(timeout 120 sha256sum < "$m/big" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "the copy's sha256 differs from the source's"
s=$(virtioctl status "$nine" --json)
echo "$s" | jq -e --argjson p0 "$pid0" '.plugin.pid != $p0 and .plugin.restarts == 0 and .driver.config.fuse == "serving"
    and (.endpoints[] | select(.kind == "fuse") | .details.connected == "yes")' >/dev/null \
    || fail "after the reloads: $(echo "$s" | jq -c '{plugin, config: .driver.config}')"
[ "$(findmnt -n "$m" | wc -l)" = 1 ] || fail "mounted $(findmnt -n "$m" | wc -l) times at $m"
journalctl -u 'virtiod-9p-*' --no-pager -o cat | grep "hand-over record written" | tail -n 2 | sed 's/^/VIRTIOD-LOG /'
echo "VIRTIOD-LOG 9p reload: 300 MiB in $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s across 2 reloads and a restart; sha256 equal"
rm -f "$m/big" /tmp/src
