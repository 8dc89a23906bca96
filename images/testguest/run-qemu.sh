#!/bin/bash
# run-qemu.sh - boot the test guest under QEMU microvm with a raw disk and a
# tap network inside a private network namespace, for people and for the
# benchmark. Needs root (network namespace, tap) and /dev/kvm.
#
#   run-qemu.sh [options] [-- guest command line words]
#     -k ELF     guest ELF (default: build/testguest.elf next to this script)
#     -d DISK    raw disk image (default: a fresh 64 MiB sparse file, deleted after)
#     -c N       vCPUs (default 2)
#     -m MIB     memory (default 128)
#     -n NAME    network namespace name (default tgtest-<pid>)
#     -t SECS    kill QEMU after SECS seconds (default 300)
#     -P         do not probe: by default, when the guest prints
#                "selftest net: listening", the script pings it and fetches
#                http://<guest>/ from inside the namespace.
#   Default guest command line: "selftest".
#
# The namespace holds tap0 with 10.0.0.1/24 (the guest's default gateway);
# no traffic leaves it. The script deletes the namespace, and the disk it
# created, on exit. It prints how long the guest took to print "ready".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
elf=$here/build/testguest.elf
disk=""
cpus=2
mem=128
ns=tgtest-$$
timeout_s=300
probe=1
while getopts "k:d:c:m:n:t:P" opt; do
	case $opt in
	k) elf=$OPTARG ;;
	d) disk=$OPTARG ;;
	c) cpus=$OPTARG ;;
	m) mem=$OPTARG ;;
	n) ns=$OPTARG ;;
	t) timeout_s=$OPTARG ;;
	P) probe=0 ;;
	*) sed -n '2,22p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
cmdline=${*:-selftest}

[ -r "$elf" ] || { echo "run-qemu.sh: no guest ELF at $elf (make -C $here first)" >&2; exit 1; }
[ -w /dev/kvm ] || { echo "run-qemu.sh: /dev/kvm is not usable" >&2; exit 1; }

qemu_pid=""
probe_pid=""
own_disk=""
log=$(mktemp /tmp/testguest-console.XXXXXX)
cleanup() {
	[ -n "$probe_pid" ] && kill "$probe_pid" 2>/dev/null || true
	[ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
	[ -n "$qemu_pid" ] && wait "$qemu_pid" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	[ -n "$own_disk" ] && rm -f "$own_disk"
	rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$disk" ]; then
	own_disk=$(mktemp /tmp/testguest-disk.XXXXXX)
	disk=$own_disk
	qemu-img create -q -f raw "$disk" 64M
fi

ip netns add "$ns"
ip netns exec "$ns" ip tuntap add tap0 mode tap
ip -n "$ns" addr add 10.0.0.1/24 dev tap0
ip -n "$ns" link set tap0 up
ip -n "$ns" link set lo up

# Reads the guest address from an ip=A.B.C.D/NN word, default 10.0.0.2.
guest_ip=10.0.0.2
for w in $cmdline; do
	case $w in ip=*) guest_ip=${w#ip=}; guest_ip=${guest_ip%/*} ;; esac
done

start=$(date +%s.%N)
ip netns exec "$ns" timeout "$timeout_s" qemu-system-x86_64 \
	-M microvm,pcie=on,rtc=on -enable-kvm -cpu host,-arch-capabilities \
	-m "$mem" -smp "$cpus" -nographic -no-reboot \
	-kernel "$elf" -append "$cmdline" \
	-drive file="$disk",format=raw,if=none,id=d0,cache=none,aio=threads -device virtio-blk-pci,drive=d0 \
	-netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0 \
	>"$log" 2>&1 &
qemu_pid=$!

# The watcher reports the time to "ready" and, when the net self test
# listens, pings the guest and fetches / over HTTP from the namespace.
(
	seen_ready=0
	tail -n +1 --pid="$qemu_pid" -f "$log" 2>/dev/null | while IFS= read -r line; do
		printf '%s\n' "$line"
		case $line in
		*"gureum-testguest: ready"*)
			if [ $seen_ready = 0 ]; then
				seen_ready=1
				echo "run-qemu.sh: ready after $(echo "$(date +%s.%N) - $start" | bc) s" >&2
			fi ;;
		*"selftest net: listening"*)
			if [ $probe = 1 ]; then
				ip netns exec "$ns" ping -c 1 -W 5 "$guest_ip" >/dev/null 2>&1 &&
					echo "run-qemu.sh: ping $guest_ip ok" >&2 || echo "run-qemu.sh: ping $guest_ip failed" >&2
				ip netns exec "$ns" curl -sS -m 10 "http://$guest_ip/" >&2 ||
					echo "run-qemu.sh: curl http://$guest_ip/ failed" >&2
			fi ;;
		esac
	done
) &
probe_pid=$!

rc=0
wait "$qemu_pid" || rc=$?
qemu_pid=""
sleep 0.2
echo "run-qemu.sh: QEMU exited with status $rc after $(echo "$(date +%s.%N) - $start" | bc) s" >&2
exit $rc
