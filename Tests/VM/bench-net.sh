#!/bin/bash
# make bench-vm: TCP throughput and ping RTT between nic0 and the kernel-driven
# twin (in a netns, same bridge), first with the kernel's virtio_net driving
# nic0, then with virtiod driving it (TAP vtnet0), in the same VM and run.
# Prints both and the ratios virtiod/kernel. TCG: absolute figures are slow.
source /payload/cases/lib.sh
secs=${BENCH_SECONDS:-5}
nic=$(iface_with_mac 52:54:00:12:34:01)

measure() { # $1 = interface, $2 = label; sets tput_out tput_in rtt
    if [ -z "$(ip netns list | grep twin)" ]; then
        twin_and_local "$1"
        ip netns exec twin iperf3 -s -D -p 5201
    else
        ip addr add 10.77.0.1/24 dev "$1"
        ip link set "$1" up
    fi
    wait_for "ping -c 1 -W 1 10.77.0.2" 20 || { say "$2: no ping"; exit 1; }
    tput_out=$(iperf3 -c 10.77.0.2 -p 5201 -t "$secs" -J | jq '.end.sum_received.bits_per_second / 1e6')
    tput_in=$(iperf3 -c 10.77.0.2 -p 5201 -t "$secs" -R -J | jq '.end.sum_received.bits_per_second / 1e6')
    rtt=$(ping -c 50 -i 0.1 -q 10.77.0.2 | awk -F/ '/^rtt/ {print $5}')
    say "$(printf '%-8s  out %8.1f Mbit/s   in %8.1f Mbit/s   ping avg %7.3f ms' "$2" "$tput_out" "$tput_in" "$rtt")"
}

say "TCP (iperf3, ${secs} s each way) and ping RTT (50 pings) to the kernel twin, $(nproc) vCPU(s)"
measure "$nic" kernel
k_out=$tput_out k_in=$tput_in k_rtt=$rtt
ip addr flush dev "$nic"
mkdir -p /etc/virtiod/virtiod.conf.d
printf '[Device]\nMACAddress=52:54:00:12:34:01\nClaim=yes\nInterfaceName=vtnet0\n' > /etc/virtiod/virtiod.conf.d/50-bench.conf
systemctl start virtiod
wait_for "[ \"\$(virtioctl list --json | jq -r '.[] | select(.interfaces | index(\"vtnet0\")) | .state')\" = running ]" 60 \
    || { say "virtiod did not bring up vtnet0"; exit 1; }
measure vtnet0 virtiod
say "$(awk -v a="$tput_out" -v b="$k_out" -v c="$tput_in" -v d="$k_in" -v e="$rtt" -v f="$k_rtt" \
    'BEGIN { printf "virtiod/kernel: throughput out %.2fx, in %.2fx; RTT %.2fx", a/b, c/d, e/f }')"

# Reload pause: 10 reloads of the net plugin, each while the twin pings vtnet0
# at 100 pps; the longest gap between replies and the pause virtioctl reports.
reloads=${BENCH_RELOADS:-10} gaps=() pauses=() lost=0
for i in $(seq "$reloads"); do
    ip netns exec twin ping -D -n -i 0.01 -c 200 -W 2 10.77.0.1 > /tmp/bench-ping 2>&1 &
    pinger=$!
    sleep 0.7
    virtioctl reload net > /tmp/bench-reload 2>&1 || { say "reload $i failed: $(cat /tmp/bench-reload)"; exit 1; }
    wait $pinger || true
    gaps+=("$(longest_reply_gap /tmp/bench-ping)")
    pauses+=("$(grep -o 'pause [0-9.]* ms' /tmp/bench-reload | awk '{ print $2 }')")
    read -r sent got < <(ping_counts /tmp/bench-ping)
    lost=$((lost + sent - got))
done
# Median and max of the arguments.
med_max() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "median %.0f ms, max %.0f ms", m, v[NR] }'; }
say "reload net x$reloads under 100 pps pings: longest gap between replies $(med_max "${gaps[@]}"); pause $(med_max "${pauses[@]}"); pings lost $lost"

# Memory: every virtio device but the rng claimed (both NICs, disk, balloon,
# console, 9P: six); resident memory of virtiod and of each plugin process,
# split into its own (anonymous + file) and the shared memory it maps (DMA
# areas, hand-over records: memfds the supervisor pins and plugins use).
pkill -x iperf3 || true; ip netns del twin 2>/dev/null || true
printf '[Device]\nType=net\nClaim=yes\n\n[Device]\nType=block\nClaim=yes\n\n[Device]\nType=balloon\nClaim=yes\n\n[Device]\nType=console\nClaim=yes\n\n[Device]\nType=9p\nClaim=yes\n' \
    > /etc/virtiod/virtiod.conf.d/50-bench.conf
systemctl reload virtiod
wait_for "[ \"\$(virtioctl list --json | jq '[.[] | select(.state == \"running\")] | length')\" -ge 6 ]" 90 \
    || { say "not six devices running: $(virtioctl list 2>&1)"; exit 1; }
sleep 3
rss() { # pid → "own X MB + shared Y MB"
    awk '$1 == "RssAnon:" { a = $2 } $1 == "RssFile:" { f = $2 } $1 == "RssShmem:" { s = $2 }
         END { printf "%5.1f MB own + %5.1f MB shared", (a + f) / 1024, s / 1024 }' "/proc/$1/status"
}
say "resident memory with $(virtioctl list --json | jq '[.[] | select(.state == "running")] | length') devices claimed (own = anonymous + file pages; shared = mapped memfds: DMA areas, records):"
say "  $(printf '%-28s' virtiod) $(rss "$(systemctl show -p MainPID --value virtiod)")"
virtioctl list --json | jq -r '.[] | select(.state == "running") | "\(.plugin.pid) \(.plugin.name) \(.address)"' | while read -r pid name addr; do
    say "  $(printf '%-28s' "$name $addr") $(rss "$pid")"
done
systemctl stop virtiod
rm -f /etc/virtiod/virtiod.conf.d/50-bench.conf
