#!/bin/bash
# Where one ping's time goes, kernel virtio_net against virtiod (a mode
# script: Tests/VM/run.sh --mode-script Tests/VM/profile-net.sh). For each
# path: perf stat over 100 pings at 20 pps (context switches, CPU time), then
# a perf trace of scheduler, interrupt, network and syscall events around one
# ping (the second of three), printed as-is. Needs linux-perf in the image.
source /payload/cases/lib.sh
set +e +o pipefail
sysctl -qw kernel.perf_event_paranoid=-1 kernel.kptr_restrict=0
nic=$(iface_with_mac 52:54:00:12:34:01)
events=sched:sched_switch,sched:sched_wakeup,irq:irq_handler_entry,irq:softirq_entry,net:net_dev_xmit,net:netif_receive_skb
events+=,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_poll,syscalls:sys_enter_sendto,syscalls:sys_enter_recvmsg

profile() { # $1 = label
    say "== $1: 100 pings at 20 pps under perf stat"
    perf stat -a -e context-switches,cpu-migrations,task-clock -x, -o /tmp/stat ping -c 100 -i 0.05 -q 10.77.0.2 > /tmp/ping 2>&1
    say "$(grep rtt /tmp/ping)"
    grep -v -e '^#' -e '^$' /tmp/stat | while IFS= read -r l; do say "  $l"; done
    say "== $1: one ping's events (the second of three; perf's own lines left out)"
    perf record -q -a -o /tmp/trace.data -e "$events" -- ping -c 3 -i 0.3 10.77.0.2 > /tmp/ping 2>&1
    say "$(grep -o 'time=[0-9.]* ms' /tmp/ping | tr '\n' ' ')"
    perf script -i /tmp/trace.data -F cpu,comm,tid,time,event,trace 2>/dev/null \
        | grep -v -E '^ *perf |swapper.*softirq_entry.*(TIMER|RCU|SCHED)' \
        | awk '/ping.*sys_enter_sendto/ { n++ } n == 2' | head -60 | while IFS= read -r l; do say "  $l"; done
}

twin_and_local "$nic"
wait_for "ping -c 1 -W 1 10.77.0.2" 20 || { say "no ping through the kernel driver"; exit 1; }
profile kernel
ip addr flush dev "$nic"; ip -6 addr flush dev "$nic"
start_virtiod_with_nic
ip addr add 10.77.0.1/24 dev vtnet0; ip link set vtnet0 up
wait_for "ping -c 1 -W 1 10.77.0.2" 20 || { say "no ping through virtiod"; exit 1; }
profile virtiod
stop_virtiod
