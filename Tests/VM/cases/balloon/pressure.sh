# case-timeout: 420
# Deflate on memory pressure (DEFLATE_ON_OOM, QEMU deflate-on-oom=on): with
# 384 MiB in the balloon, a memory hog in the guest grows (8 MiB every
# 0.1 s) to 160 MiB more than is available. The balloon gives memory back
# (PSI trigger, low-memory check) before the OOM killer acts: the hog gets
# all it asked for, oom_kill stays as it was. After the hold-off (8 s here,
# `Option=pressure_hold_off_sec=8`; 30 s by default: every countdown the
# plugin logs is at most 8 s) the balloon follows the host's target again.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
since=$(date +%s)
start_balloon "Option=pressure_hold_off_sec=8"
virtioctl status "$bal" --json | jq -r .driver.config.deflate_on_oom | grep -q '^yes' \
    || fail "deflate-on-oom not in use: $(virtioctl status "$bal" --json | jq -c .driver.config)"
target=$((GUEST_RAM - (384 << 20)))
balloon_to "$target"
wait_balloon "$target" 20
oom0=$(oom_kills)
avail=$(mem_available_mib)
hog=$(( (avail + 160) / 8 * 8 ))
# tail -c keeps everything it reads in memory (anonymous memory of its own).
t0=$(date +%s%N)
( for i in $(seq 1 $((hog / 8))); do head -c 8M /dev/zero; sleep 0.1; done ) | tail -c "${hog}M" | wc -c > /tmp/hog.out
rc=${PIPESTATUS[1]}
hog_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$(oom_kills)" -eq "$oom0" ] || fail "the OOM killer fired ($oom0 → $(oom_kills)): $(dmesg | grep -i -A3 'out of memory' | tail -n 8)"
[ "$rc" -eq 0 ] && [ "$(cat /tmp/hog.out)" -eq $((hog << 20)) ] || fail "the hog did not get its ${hog} MiB (tail exit $rc, $(cat /tmp/hog.out) bytes)"
held=$(balloon_held_mib)
[ "$held" -lt 384 ] || fail "the balloon still holds $held MiB"
deflates=$(virtioctl status "$bal" --json | jq '[.driver.queues[].counters.pressure_deflates // 0] | add')
[ "$deflates" -ge 1 ] || fail "no pressure deflate counted: $(virtioctl status "$bal" --json | jq -c '.driver.queues')"
journalctl -u 'virtiod-balloon-*' --no-pager | grep "memory pressure" | tail -n 3
echo "hog of $hog MiB ($avail MiB were available) done in $hog_ms ms: the balloon gave back $((384 - held)) MiB in $deflates pressure deflate(s); oom_kill $oom0 → $(oom_kills)"
# The hog is gone: the hold-off is the one configured (the plugin logs the
# countdown when it starts holding below the target), then the balloon
# returns to the target.
longest=$(journalctl -u 'virtiod-balloon-*' --since "@$since" --no-pager -o cat | sed -n 's/.*inflating again in \([0-9]*\) s.*/\1/p' | sort -n | tail -n1)
[ -n "$longest" ] || fail "no hold-off countdown in the plugin's journal: $(journalctl -u 'virtiod-balloon-*' --since "@$since" --no-pager -o cat | tail -n 5)"
[ "$longest" -le 8 ] || fail "a hold-off countdown of $longest s: not the configured 8 s"
wait_balloon "$target" 60
echo "back at the target after the hold-off ($((BALLOON_MS / 1000)) s after the hog)"
balloon_to "$GUEST_RAM"
wait_balloon "$GUEST_RAM" 30
