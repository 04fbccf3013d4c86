# A device that lies costs a dropped packet and a counter, not a crash. The
# test plays the lying device: with the link quiet (QMP set_link off) it
# writes into the receive queue's used ring, through the DMA memfd virtiod
# holds, two completions the device never made — one with a used length far
# beyond the 4 KiB buffer, one whose buffer carries a malformed vnet header
# (an unknown GSO type) — and makes the plugin look at the ring with a reload
# (the old process drains it while it quiesces). Both must be dropped and
# counted as malformed. Afterwards the ring no longer matches what QEMU
# believes: the re-posted buffers make more heads than the ring holds, QEMU
# declares itself broken (DEVICE_NEEDS_RESET), or the driver's queue breaks
# on the next packet. Either must be logged, the device reset, the plugin
# restarted, and traffic must come back.
source /payload/cases/lib.sh
start_nic_with_twin

main=$(systemctl show -P MainPID virtiod)
memfd=""
for f in /proc/$main/fd/*; do
    case "$(readlink "$f")" in "/memfd:virtiod-dma-$net"*) memfd=$f ;; esac
done
[ -n "$memfd" ] || fail "no DMA memfd of $net in virtiod's fds"
q=$(virtioctl status "$net" --json | jq '.driver.queues[] | select(.name == "receiveq0")')
# The lies below are written in the split ring's used-ring format (§2.7.8).
[ "$(echo "$q" | jq -r .layout)" = split ] || fail "written for split rings; receiveq0 is $(echo "$q" | jq -r .layout)"
size=$(echo "$q" | jq .size); desc=$(echo "$q" | jq .ring_offsets.descriptors)
avail=$(echo "$q" | jq .ring_offsets.driver); used=$(echo "$q" | jq .ring_offsets.device)
malformed0=$(echo "$q" | jq .counters.malformed)

u16() { od -An -t u2 -j "$1" -N 2 "$memfd" | tr -d ' '; }
u64() { od -An -t u8 -j "$1" -N 8 "$memfd" | tr -d ' '; }
put() { # offset, value, bytes (little-endian)
    local bytes="" i
    for ((i = 0; i < $3; i++)); do bytes+=$(printf '\\x%02x' $((($2 >> (8 * i)) & 255))); done
    printf "$bytes" | dd of="$memfd" bs=1 seek="$1" conv=notrunc status=none
}

host_step set_link '{"name": "nic0", "up": false}' >/dev/null || fail "set_link off failed"
sleep 1
idx=$(u16 $((used + 2)))
aidx=$(u16 $((avail + 2)))
# Two buffers the driver posted and the device has not taken yet.
y1=$(u16 $((avail + 4 + 2 * ((aidx - 1) % size))))
y2=$(u16 $((avail + 4 + 2 * ((aidx - 2) % size))))
buf2=$(( $(u64 $((desc + 16 * y2))) - 0x100000000 ))
# Lie 1: buffer y1 "holds" 100000 bytes.
put $((used + 4 + 8 * (idx % size))) "$y1" 4
put $((used + 8 + 8 * (idx % size))) 100000 4
# Lie 2: buffer y2 holds a 200-byte packet whose vnet header has GSO type 0x7f.
put "$buf2" $((0x7f << 8)) 2
put $((buf2 + 10)) 1 2
put $((used + 4 + 8 * ((idx + 1) % size))) "$y2" 4
put $((used + 8 + 8 * ((idx + 1) % size))) 200 4
put $((used + 2)) $(((idx + 2) & 0xffff)) 2

virtioctl reload net > /tmp/lie-reload 2>&1 || fail "reload after the lies failed: $(cat /tmp/lie-reload)"
s=$(virtioctl status "$net" --json)
malformed=$(echo "$s" | jq '.driver.queues[] | select(.name == "receiveq0") | .counters.malformed')
echo "lying device: used index $idx → $((idx + 2)) by hand, malformed $malformed0 → $malformed, plugin $(echo "$s" | jq -r .state)"
[ "$((malformed - malformed0))" -ge 2 ] || fail "the two lies were not counted as malformed ($malformed0 → $malformed)"
[ "$(echo "$s" | jq -r .state)" = running ] || fail "the plugin did not survive the lies: $(echo "$s" | jq -c '{state, reason}')"

# The ring is now out of step with QEMU: something breaks, and recovers.
host_step set_link '{"name": "nic0", "up": true}' >/dev/null || fail "set_link on failed"
start=$(date +%s%N)
deadline=$(( $(date +%s) + 60 ))
until ping -c 1 -W 1 10.77.0.2 >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge $deadline ]; then
        journalctl -u virtiod -n 6 --no-pager -o cat
        echo "carrier $(cat /sys/class/net/vtnet0/carrier); device used idx $(device_used_idx nic0 0); ring idx $(u16 $((used + 2)))"
        virtioctl status "$net" --json | jq -c '[.driver.queues[] | {name, interrupts, c: .counters}], .driver.config.link'
        ip -s link show vtnet0 | tail -n 4
        fail "traffic did not come back within 60 s: $(virtioctl status "$net" --json | jq -c '{state, reason, plugin}')"
    fi
done
echo "traffic back after $(( ($(date +%s%N) - start) / 1000000 )) ms; plugin restarts: $(virtioctl status "$net" --json | jq .plugin.restarts)"
[ "$(virtioctl status "$net" --json | jq .plugin.restarts)" -ge 1 ] || fail "the plugin carried on with a ring out of step"
why="device (moved the used index|returned id)|DEVICE_NEEDS_RESET"
journalctl -u virtiod -n 100 --no-pager -o cat | grep -E "$why" | tail -n 1
journalctl -u virtiod -n 100 --no-pager -o cat | grep -qE "$why" || fail "why the plugin was restarted is not in the journal"
