#!/bin/bash
# make bench-vm (block): fio on twin disks in the same VM and run — two
# identical hot-added virtio-blk disks backed by equal raw files, one driven
# by the kernel's virtio_blk (/dev/vdX), one by virtiod (/dev/nbdN on the
# stock kernel, /dev/ublkbN on the backports kernel: make bench-vm runs both): 4 KiB
# random read and write at queue depth 32 (IOPS), 1 MiB sequential read and
# write (MB/s), BENCH_SECONDS each (default 20), O_DIRECT. Prints both and
# the ratios virtiod/kernel. TCG: absolute figures are slow.
source /payload/cases/lib.sh
secs=${BENCH_SECONDS:-20}
start_virtiod
before=$(ls /sys/block)
kdisk=$(hot_add_disk benchk blkfs hp0 benchk)
wait_for "ls /sys/block | grep -qvxF \"\$(echo \"$before\")\"" 30 || { say "the kernel's disk did not appear"; exit 1; }
kdev=/dev/$(comm -13 <(echo "$before" | sort) <(ls /sys/block | sort) | head -n1)
vdisk=$(hot_add_disk benchv blkfio hp1 benchv)
vdev=$(claim_disk "$vdisk" benchv)
# Equal sizes: the same ranges are read and written on both.
size=$(( $(blockdev --getsize64 "$vdev") < $(blockdev --getsize64 "$kdev") ? $(blockdev --getsize64 "$vdev") : $(blockdev --getsize64 "$kdev") ))
say "fio, ${secs} s per test, O_DIRECT, $(nproc) vCPU(s), kernel $(uname -r): kernel virtio_blk $kdev vs virtiod $vdev over $DISK_ENDPOINT ($((size >> 20)) MiB each)"
run() { # $1 device, $2 rw, $3 bs, $4 iodepth → IOPS and MB/s of the job
    fio --name=b --filename="$1" --direct=1 --ioengine=libaio --rw="$2" --bs="$3" --iodepth="$4" --size="$size" \
        --time_based --runtime="$secs" --output-format=json 2>/dev/null \
        | sed -n '/^{/,$p' | jq -r --arg d "$([ "${2#rand}" = write ] || [ "$2" = write ] && echo write || echo read)" \
            '.jobs[0][$d] | "\(.iops) \(.bw_bytes / 1e6)"'
}
for t in "randread 4k 32 iops" "randwrite 4k 32 iops" "read 1M 8 mbps" "write 1M 8 mbps"; do
    set -- $t
    read -r kiops kmbps < <(run "$kdev" "$1" "$2" "$3")
    read -r viops vmbps < <(run "$vdev" "$1" "$2" "$3")
    if [ "$4" = iops ]; then k=$kiops v=$viops unit=IOPS; else k=$kmbps v=$vmbps unit=MB/s; fi
    say "$(awk -v t="$1 $2 QD$3" -v k="$k" -v v="$v" -v u="$unit" \
        'BEGIN { printf "%-16s kernel %9.1f %s   virtiod %9.1f %s   virtiod/kernel %.2fx", t, k, u, v, u, (k > 0 ? v / k : 0) }')"
done
virtioctl status "$vdisk" --json | jq -c '[.driver.queues[] | {name, requests: .counters.requests, kicks: .counters.kicks, interrupts}]' \
    | sed 's/^/VIRTIOD-DEMO virtiod queues: /'
remove_disk benchv "$vdisk"
remove_disk benchk "$kdisk"
stop_virtiod
