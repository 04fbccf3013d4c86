source /payload/cases/lib.sh
trap stop_virtiod EXIT
bal=$(virtio_functions 1045); blk=$(virtio_functions 1042)
for i in 1 2 3 4 5 6; do
start_virtiod "[Device]
MACAddress=52:54:00:12:34:01
Claim=yes
InterfaceName=vtnet0

[Device]
Serial=virtiod-blk0
Claim=yes

[Device]
Address=$bal
Claim=yes

[Device]
Type=console
Claim=yes

[Device]
Type=9p
Claim=yes"
wait_state "$blk" running 90
for t in 1 2 3 4 5 6 7 8 9 10 11 12; do
  echo "round $i t=$t recv workers: $(ps -e -o comm | grep -c 'nbd.*-recv') $(ps -e -o comm | grep 'nbd' | tr '\n' ' ')"
  sleep 1
done
journalctl -u 'virtiod-block-*' -u virtiod --no-pager -o short-precise | grep -E "closed by the kernel|fresh|renewed" | tail -n 5
dmesg | grep nbd | tail -n 4
virtioctl status "$blk" --json | jq -c '[.driver.queues[].counters | {requests, connections_lost}]'
stop_virtiod
sleep 2
done
