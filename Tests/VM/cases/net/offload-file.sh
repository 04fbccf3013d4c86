# With checksum offload and TSO on (as ethtool shows them on the TAP), a
# 100 MB file crosses between the virtiod NIC and the kernel twin in both
# directions and arrives with the same SHA-256.
source /payload/cases/lib.sh
cleanup() { ip netns del twin 2>/dev/null || true; stop_virtiod; rm -f /tmp/send /tmp/send.sha /tmp/recv-*; }
trap cleanup EXIT
# The file and its hash are made while virtiod starts (every step is slow under TCG).
(head -c 100M /dev/urandom > /tmp/send && sha256sum < /tmp/send | cut -d' ' -f1 > /tmp/send.sha) &
maker=$!
start_virtiod_with_nic
s=$(virtioctl status "$net" --json)
echo "$s" | jq -e '.driver.negotiated.names | index("HOST_TSO4") and index("CSUM") and index("GUEST_TSO4") and index("MRG_RXBUF")' >/dev/null \
    || fail "offloads not negotiated: $(echo "$s" | jq -c .driver.negotiated.names)"
k=$(ethtool -k vtnet0)
echo "$k" | grep -q "^tx-checksumming: on" || fail "tx checksum offload off on vtnet0: $(echo "$k" | grep checksumming)"
echo "$k" | grep -q "^tcp-segmentation-offload: on" || fail "TSO off on vtnet0: $(echo "$k" | grep segmentation)"

twin_and_local vtnet0
ethtool -K vtnet0 tso on tx on >/dev/null 2>&1 || true
wait_for "ping -c 1 -W 1 10.77.0.2" 15 || fail "no ping to the twin"

wait $maker || fail "could not make the 100 MB test file"
want=$(cat /tmp/send.sha)
# Out: virtiod → twin, then in: twin → virtiod (socat: byte-exact copies).
ip netns exec twin socat -u TCP-LISTEN:5301,reuseaddr OPEN:/tmp/recv-out,creat,trunc &
wait_for "ip netns exec twin ss -ltn | grep -q :5301" 10 || fail "receiver did not start"
start=$(date +%s%N)
socat -u OPEN:/tmp/send TCP:10.77.0.2:5301 || fail "sending failed"
wait
out_ms=$(( ($(date +%s%N) - start) / 1000000 ))
got=$(sha256sum < /tmp/recv-out | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "file sent through virtiod arrived different ($(stat -c %s /tmp/recv-out) bytes)"
socat -u TCP-LISTEN:5302,reuseaddr OPEN:/tmp/recv-in,creat,trunc &
wait_for "ss -ltn | grep -q :5302" 10 || fail "receiver did not start"
start=$(date +%s%N)
ip netns exec twin socat -u OPEN:/tmp/send TCP:10.77.0.1:5302 || fail "receiving failed"
wait
in_ms=$(( ($(date +%s%N) - start) / 1000000 ))
got=$(sha256sum < /tmp/recv-in | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "file received through virtiod arrived different ($(stat -c %s /tmp/recv-in) bytes)"
echo "100 MB out in $out_ms ms, in in $in_ms ms"
s=$(virtioctl status "$net" --json)
[ "$(echo "$s" | jq '[.driver.queues[].counters.malformed // 0] | add')" -eq 0 ] \
    || fail "malformed headers counted: $(echo "$s" | jq -c '[.driver.queues[] | {name, malformed: .counters.malformed}]')"
