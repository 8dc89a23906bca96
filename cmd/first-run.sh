#!/bin/sh
# First run of gureum on this machine, called by `make run` after `make build`:
# picks the default guest image, starts the daemon in the background (state in
# /var/lib/gureum, API on /run/gureum/gureum.sock: the CLI's defaults), launches
# a first instance from the default AMI and says what to try next.
#
# Needs root (cgroups, /dev/kvm). Running it again reuses a daemon that is
# already up and launches one more instance.
set -eu

BIN=${BIN:-bin}
GUREUM="$BIN/gureum"
DATA=${GUREUM_DATA_DIR:-/var/lib/gureum}
SOCK=${GUREUM_SOCKET:-/run/gureum/gureum.sock}
PIDFILE=$(dirname "$SOCK")/gureum.pid
LOG="$DATA/daemon.log"
export GUREUM_SOCKET="$SOCK"

say() { printf '%s\n' "$*"; }
die() { printf 'first run: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the daemon needs /dev/kvm and cgroups"
[ -c /dev/kvm ] || die "/dev/kvm is missing: load the kvm module (kvm_intel or kvm_amd)"

# The default image. A stock Linux kernel needs hardware virtualization
# (the kvm_intel or kvm_amd module); on PVM hosts the daemon registers the
# test guest instead, and we say so in one line.
if [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; then
	say "==> building the default Debian 12 guest image (kernel, initramfs, root disk; cached after the first time)"
	if ! "$GUREUM" image build --flavour cloud; then
		say "==> the Debian image could not be built; the daemon will register the test guest instead"
	fi
else
	say "==> this host's KVM has no VT-x/AMD-V (PVM) and cannot boot Linux: the first instance runs gureum's test guest"
fi

# The daemon: reuse one that answers, else start one detached from this
# terminal (setsid), so it keeps running after make returns. T instances
# are burstable, so a small machine offers 8 guest vCPUs per host CPU
# (EC2 does not overcommit; `gureum daemon --help` shows the knobs).
mkdir -p "$DATA" "$(dirname "$SOCK")"
if "$GUREUM" account ls >/dev/null 2>&1; then
	say "==> a gureum daemon already answers on $SOCK"
else
	say "==> starting the gureum daemon (data in $DATA, API on $SOCK, log in $LOG)"
	setsid "$GUREUM" daemon --data-dir "$DATA" --socket "$SOCK" --cgroup "${GUREUM_CGROUP:-gureum}" \
		--cpu-overcommit 8 </dev/null >>"$LOG" 2>&1 &
	echo $! >"$PIDFILE"
	i=0
	until "$GUREUM" account ls >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -le 100 ] || die "the daemon did not come up; see $LOG"
		kill -0 "$(cat "$PIDFILE")" 2>/dev/null || die "the daemon exited; see $LOG"
		sleep 0.1
	done
fi

# The default AMI is registered by the daemon when it starts (owner alias
# "gureum"): the Debian guest if it was built, else the test guest.
AMI=$("$GUREUM" image ls --owner gureum -o json | grep -o '"image_id": *"ami-[0-9a-f]*"' | grep -o 'ami-[0-9a-f]*' | tail -n 1)
[ -n "$AMI" ] || die "the daemon has no default image; see $LOG"
say "==> launching a first instance from $AMI"
"$GUREUM" image ls --owner gureum
OUT=$("$GUREUM" instance run --image-id "$AMI" --type t3.nano --name first --wait -o json) ||
	die "the launch failed (above); the daemon's log is $LOG"
ID=$(printf '%s\n' "$OUT" | grep -o '"instance_id": *"i-[0-9a-f]*"' | grep -o 'i-[0-9a-f]*' | head -n 1)
[ -n "$ID" ] || die "no instance was launched: $OUT"
"$GUREUM" instance ls "$ID"

# The commands below, as the user types them (with the socket when it is
# not the CLI's default).
G="$GUREUM"
[ "$SOCK" = /run/gureum/gureum.sock ] || G="GUREUM_SOCKET=$SOCK $GUREUM"
cat <<EOF

gureum is running. Your first instance is $ID.

  $G instance console $ID            # what its serial console printed
  $G instance console $ID --attach   # live console; Ctrl-] detaches
  $G instance describe $ID
  $G instance stop $ID --wait        # then: instance start $ID --wait
  $G instance terminate $ID --wait
  $G instance run --image-id $AMI --type t3.nano --count 3 --wait
  $G image ls; $G type ls; $G billing
  $G account create alice            # a tenant; use its token with --token

The admin's API token is in $DATA/admin.token (the unix socket needs none).
Stop the daemon with: kill \$(cat $PIDFILE)   (instances keep running; the
next daemon re-adopts them). docs/daemon.md and docs/cli.md say more.
EOF
