# case-timeout: 420
# Inflate and deflate with pages virtiod really holds: QMP `balloon` to
# 256 MiB below the guest's size → the host sees it (goal: within 10 s; printed), the
# supervisor holds 256 MiB (pinned), MemAvailable drops by about that; back
# up → it deflates and the memory returns. A 200 MB tmpfs file (sha256) and
# memtester running throughout prove the host discarded no page the guest
# uses (the frame numbers sent are guest-physical, from pagemap). Then a
# target beyond what the guest can spare: the balloon stops short, keeps the
# guest's reserve available and says why.
source /payload/cases/lib.sh
cleanup() { [ -z "${mt:-}" ] || { kill "$mt"; pkill -x memtester; } 2>/dev/null || true; umount /tmp/bt 2>/dev/null || true; stop_virtiod; }
trap cleanup EXIT
start_balloon
[ "$(balloon_size)" -eq "$GUEST_RAM" ] || fail "the host sees $(balloon_size) bytes before any target"

mkdir -p /tmp/bt && mount -t tmpfs -o size=210m tmpfs /tmp/bt
head -c 200M /dev/urandom > /tmp/bt/data
sum0=$(sha256sum < /tmp/bt/data)
# memtester over and over until the end (a failed run stops the loop).
(while memtester 6M 1 >> /tmp/memtester.log 2>&1; do echo "run passed" >> /tmp/memtester.log; done; echo "run FAILED" >> /tmp/memtester.log) & mt=$!
sleep 2
avail0=$(mem_available_mib)

# The goal is 10 s; under TCG on a shared 2-core host the same code took
# 6.1–9.9 s on one day and missed 10 s once with a smaller tmpfs file, so
# the case waits up to 60 s and prints the time
# against the goal (a speed target belongs to a measurement, not to a
# timed assertion that fails with the host's load).
balloon_to $((GUEST_RAM - (256 << 20)))
wait_balloon $((GUEST_RAM - (256 << 20))) 60; ms=$BALLOON_MS
[ "$(balloon_held_mib)" -eq 256 ] || fail "the supervisor holds $(balloon_held_mib) MiB, not 256"
[ "$(virtioctl status "$bal" --json | jq .driver.config.actual)" -eq 65536 ] || fail "actual: $(virtioctl status "$bal" --json | jq -c .driver.config)"
sleep 1
avail1=$(mem_available_mib)
drop=$((avail0 - avail1))
[ "$drop" -ge 216 ] && [ "$drop" -le 296 ] || fail "MemAvailable dropped by $drop MiB ($avail0 → $avail1), not about 256"
echo "inflated 256 MiB in $ms ms (goal 10000 ms$([ "$ms" -le 10000 ] || echo ': missed')); MemAvailable $avail0 → $avail1 MiB"
echo "last chunk: $(virtioctl status "$bal" --json | jq -r '.endpoints[] | select(.kind == "balloon") | .details["last chunk"]')"

balloon_to "$GUEST_RAM"
wait_balloon "$GUEST_RAM" 60; ms=$BALLOON_MS
[ "$(balloon_held_mib)" -eq 0 ] || fail "the supervisor still holds $(balloon_held_mib) MiB after deflating"
sleep 1
avail2=$(mem_available_mib)
[ $((avail2 - avail1)) -ge 216 ] || fail "MemAvailable came back by $((avail2 - avail1)) MiB only ($avail1 → $avail2)"
echo "deflated in $ms ms; MemAvailable back to $avail2 MiB"

# More than the guest can spare: 128 MiB left of 1 GiB.
balloon_to $((128 << 20))
wait_for "[ \"\$(virtioctl status $bal --json | jq -r .driver.config.inflate)\" != 'at the target' ] && virtioctl status $bal --json | jq -r .driver.config.inflate | grep -q 'cannot spare'" 60 \
    || fail "no shortfall reported: $(virtioctl status "$bal" --json | jq -c .driver.config)"
# memtester keeps running, so MemAvailable moves and the balloon may still
# move a chunk or two around its reserve; the host's figure follows each
# chunk once the device took its frames. Both must agree within 10 s.
held_agrees() { held=$(balloon_held_mib); [ "$(balloon_size)" -eq $((GUEST_RAM - (held << 20))) ]; }
deadline=$(( $(date +%s) + 10 ))
until held_agrees; do
    [ "$(date +%s)" -lt $deadline ] || fail "the host sees $(balloon_size), the supervisor holds $(balloon_held_mib) MiB"
    sleep 0.5
done
held=$(balloon_held_mib)
left=$(mem_available_mib)
[ "$left" -ge 56 ] || fail "the balloon left the guest $left MiB available (keeps 64)"
echo "target 128 MiB: stopped at $held MiB held, $left MiB left available: $(virtioctl status "$bal" --json | jq -r .driver.config.inflate)"
balloon_to "$GUEST_RAM"
wait_balloon "$GUEST_RAM" 30


# The loop first (so a killed run is not taken for a failed one), then its memtester.
kill "$mt"; wait "$mt" 2>/dev/null || true; pkill -x memtester || true; mt=
! grep -q -e "run FAILED" -e "FAILURE" /tmp/memtester.log || fail "memtester failed: $(grep -B5 -i fail /tmp/memtester.log | tail -n 20)"
runs=$(grep -c "run passed" /tmp/memtester.log)
[ "$runs" -ge 1 ] || fail "memtester did not complete a run: $(tail -n 5 /tmp/memtester.log)"
[ "$(sha256sum < /tmp/bt/data)" = "$sum0" ] || fail "the tmpfs file changed while the balloon moved"
echo "memtester: $runs runs passed; the 200 MB tmpfs file is unchanged"
