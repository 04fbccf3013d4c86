#!/bin/bash
# make bench-vm: TCP throughput and ping RTT between nic0 and the kernel-driven
# twin (in a netns, same bridge), first with the kernel's virtio_net driving
# nic0, then with virtiod driving it (TAP vtnet0), in the same VM and run.
# Prints both and the ratios virtiod/kernel. TCG: absolute figures are slow.
source /payload/cases/lib.sh
say() { echo "VIRTIOD-DEMO $*"; }
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
systemctl stop virtiod
rm -f /etc/virtiod/virtiod.conf.d/50-bench.conf
