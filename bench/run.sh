#!/usr/bin/env bash
# urunc benchmarks: what urunc adds, measured side by side in one run.
#
#   sudo make bench                  (or, as root:  bash bench/run.sh [--smoke])
#
# P1  lifecycle cost. `urunc create` + `start` + `delete --force` of a unikernel bundle
#     (the test kernel as a unikraft guest) whose monitor is a no-op: a directory first
#     on PATH holds a `qemu-system-x86_64` that is a copy of /bin/true, so only urunc's
#     own work is timed (config, plan, namespaces, cgroups, monitor root, exec).
#     Baseline: `runc create` + `start` + `delete --force` of a busybox /bin/true bundle.
#     Both bundles come from `runc spec` (same namespaces, terminal off). Target: the
#     urunc/runc ratio of the medians is at most 0.25.
# P2  end-to-end cost. `ctr run --rm` through our shim (`--runtime io.containerd.urunc.v2`,
#     a private containerd) vs the identical QEMU command run bare on the host: the argv
#     urunc generated (read from urunc's state of a capture run) with /guest/kernel and
#     /guest/initrd replaced by the same files on the host. Same kernel, initrd, command
#     line and accelerator. Two guests: the tiny test kernel (target: at most bare + 60
#     ms) and the Debian Linux guest with its busybox initrd (target: at most 1.10 x
#     bare). The test kernel also runs through containerd's Go runc shim driving urunc
#     (`--runtime io.containerd.runc.v2 --runc-binary urunc`), against our shim (target:
#     ours no slower), and a runc container running /bin/true gives containerd's own
#     floor. A reported row: the test kernel through our shim from an image that chooses
#     QEMU's microvm machine (`urunc-pack --qemu-machine microvm`) vs the same on pc.
# P3  shim memory. RSS and PSS (smaps_rollup) of containerd-shim-urunc-v2 serving one
#     running test-kernel container vs containerd's Go containerd-shim-runc-v2 serving
#     one runc busybox container. Target: ours at most 0.35 x the Go shim's.
# P4  host memory per container. MemAvailable before and after starting 50 (`ctr run -d`)
#     test-kernel containers that stay up (`wait`: the guest halts), divided by 50, next
#     to the same for 50 runc busybox `sleep` containers; also the summed PSS of each
#     container's processes (shim + monitor, or shim + sleep), which other load on the
#     machine does not disturb. The guest's RAM is only counted as far as it is touched
#     (a few pages for the test kernel). Target: at most 25 MiB per urunc container.
# P5  density and start rate. 100 test-kernel containers started one after the other
#     with `ctr run -d` (each returns when its task is started; both sides take their
#     rootfs as a directory, not an image snapshot) and left running; all
#     must be RUNNING in `ctr task ls`, then all are deleted and nothing may be left
#     (tasks, containers, shims, monitors, urunc state). The same for 100 runc busybox
#     `sleep` containers. Reported: containers started per second; target: urunc's rate
#     at least 0.8 x runc's.
#     In P4 and P5 the test kernels run under KVM when a probe boots one there (see
#     BENCH_MANY_ACCEL), as users with hardware virtualisation run them; the report
#     says which accelerator was used. The runc side is the same either way.
#
# Method: for each pair, warm-up runs of both sides, then N rounds alternating which
# side goes first; every run is checked (exit status, expected console output) and a
# failed run aborts the benchmark. Reported: medians in ms, difference and ratio, and
# whether the target is met. Targets are reported, not enforced: the exit status is 0
# when every run worked.
#
# Options and environment:
#   --smoke             N=2 with one warm-up run, P4 with 3 and P5 with 4 containers
#                       (CI uses it to keep the script working)
#   BENCH_ONLY          the parts to run, e.g. "P1 P2" (default: P1 P2 P3 P4 P5)
#   BENCH_BASELINE      another urunc binary (e.g. a copy built before a change): P1 and
#                       the P2 test kernel also run it against this tree's, alternating,
#                       for before/after figures from one run
#   BENCH_P4_COUNT      containers per side in P4 (default 50)
#   BENCH_P5_COUNT      containers per side in P5 (default 100)
#   BENCH_N             rounds per pair (default 20)
#   BENCH_WARMUP        warm-up runs per side (default 3)
#   BENCH_OUT           also write the report (table and raw samples) to this file
#   URUNC_QEMU_ACCEL    accelerator for P2 and P3 (default tcg; P1 always uses tcg)
#   BENCH_MANY_ACCEL    accelerator for the test kernels of P4 and P5: auto (default:
#                       kvm if a probe boots the test kernel under KVM, else tcg), kvm
#                       or tcg. Under kvm the guests run on `-M microvm` (qboot; SeaBIOS
#                       on `-M pc` needs seconds of CPU under a software KVM such as PVM)
#   URUNC_FIXTURES      fixture cache (default /var/cache/urunc-fixtures)
#
# Needs root, the release binaries (built if missing), the fixtures (built if missing),
# qemu-system-x86_64, containerd, ctr, runc, python3 and a static busybox.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../scripts/lib/containerd.sh
source "$ROOT/scripts/lib/containerd.sh"

N=${BENCH_N:-20}
WARMUP=${BENCH_WARMUP:-3}
P4_COUNT=${BENCH_P4_COUNT:-50}
P5_COUNT=${BENCH_P5_COUNT:-100}
ONLY=${BENCH_ONLY:-P1 P2 P3 P4 P5}
case ${1:-} in
--smoke) N=2 WARMUP=1 P4_COUNT=3 P5_COUNT=4 ;;
"") ;;
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "usage: $0 [--smoke]" >&2
	exit 2
	;;
esac
[[ $N =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[0-9]+$ && $P4_COUNT =~ ^[1-9][0-9]*$ && $P5_COUNT =~ ^[1-9][0-9]*$ ]] || {
	echo "bench: BENCH_N, BENCH_P4_COUNT and BENCH_P5_COUNT must be positive integers and BENCH_WARMUP a number" >&2
	exit 2
}
for part in $ONLY; do
	[[ $part =~ ^P[1-5]$ ]] || {
		echo "bench: BENCH_ONLY=$ONLY: expected parts among P1 P2 P3 P4 P5" >&2
		exit 2
	}
done
want() { [[ " $ONLY " == *" $1 "* ]]; }
BASELINE=${BENCH_BASELINE:-}
[[ -z $BASELINE || -x $BASELINE ]] || {
	echo "bench: BENCH_BASELINE=$BASELINE is not an executable" >&2
	exit 2
}
P3_OURS=() P3_GO=()

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
((EUID == 0)) || die "run as root (containers need root here)"
for c in qemu-system-x86_64 containerd ctr runc python3; do
	command -v "$c" >/dev/null || die "$c not found (see .ci/run for the Debian packages)"
done
BUSYBOX=${BUSYBOX:-/bin/busybox}
[[ -x $BUSYBOX ]] || die "$BUSYBOX not found (apt-get install busybox-static)"

URUNC=$ROOT/target/release/urunc
PACK=$ROOT/target/release/urunc-pack
SHIM=$ROOT/target/release/containerd-shim-urunc-v2
if [[ ! -x $URUNC || ! -x $PACK || ! -x $SHIM ]]; then
	log "building the release binaries"
	(cd "$ROOT" && cargo build --release --quiet -p urunc-cli -p urunc-pack -p containerd-shim-urunc-v2)
fi
FIX=${URUNC_FIXTURES:-/var/cache/urunc-fixtures}
TESTKERNEL=$FIX/testkernel/testkernel.elf
VMLINUX=$FIX/linux/vmlinux
INITRD=$FIX/linux/initrd.cpio
[[ -s $TESTKERNEL ]] || bash "$ROOT/fixtures/build-testkernel.sh" >/dev/null
[[ -s $VMLINUX && -s $INITRD ]] || bash "$ROOT/fixtures/build-linux-guest.sh" >/dev/null
P2_ACCEL=${URUNC_QEMU_ACCEL:-tcg}
[[ $P2_ACCEL == kvm || $P2_ACCEL == tcg ]] || die "URUNC_QEMU_ACCEL=$P2_ACCEL: expected kvm or tcg"
MANY_ACCEL=${BENCH_MANY_ACCEL:-auto}
[[ $MANY_ACCEL == auto || $MANY_ACCEL == kvm || $MANY_ACCEL == tcg ]] ||
	die "BENCH_MANY_ACCEL=$MANY_ACCEL: expected auto, kvm or tcg"
MANY_ACCEL_WHY=requested

# ----------------------------------------------------------------- cleanup
W=$(mktemp -d /tmp/urunc-bench.XXXXXX)
CG=urunc-bench-$$ # parent cgroup of every P1 container
PC_URUNC=$URUNC
cleanup() {
	local rc=$? d
	trap - EXIT INT TERM
	set +e
	for d in "$W/p1/urunc-root" "$W/p1/new-root" "$W/p1/base-root" "$W/p1/runc-root"; do
		[[ -d $d ]] || continue
		for id in $(ls "$d"); do
			case $d in
			*/runc-root) runc --root "$d" delete --force "$id" ;;
			*/base-root) "$BASELINE" --root "$d" delete --force "$id" ;;
			*) "$URUNC" --root "$d" delete --force "$id" ;;
			esac
		done
	done >/dev/null 2>&1
	pc_stop >"$W/cleanup.log"
	sed 's/^/[bench] cleanup: /' "$W/cleanup.log" >&2
	for d in /sys/fs/cgroup/"$CG" /sys/fs/cgroup/*/"$CG"; do
		[[ -d $d ]] && rmdir "$d"/*/ "$d" 2>/dev/null
	done
	[[ -z $(pc_mounts_under "$W") ]] && rm -rf "$W"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----------------------------------------------------------------- measuring
# Each side is a shell function that runs once and returns non-zero on failure;
# `measure PAIR SIDE FN ARGS` appends the wall time in microseconds to SAMPLES_<PAIR>_<SIDE>.
RUN_NO=0
measure() {
	local pair=$1 side=$2 fn=$3 t0 t1
	shift 3
	RUN_NO=$((RUN_NO + 1))
	t0=${EPOCHREALTIME//[!0-9]/}
	if ! "$fn" "$@"; then
		die "$pair $side: run $RUN_NO failed (see above)"
	fi
	t1=${EPOCHREALTIME//[!0-9]/}
	eval "SAMPLES_${pair}_${side}+=($((t1 - t0)))"
}

# pair A-function B-function: warm-ups, then N alternating rounds.
bench_pair() {
	local pair=$1 fa=$2 fb=$3 i
	for ((i = 0; i < WARMUP; i++)); do
		"$fa" || die "$pair A: warm-up run failed"
		"$fb" || die "$pair B: warm-up run failed"
	done
	eval "SAMPLES_${pair}_A=() SAMPLES_${pair}_B=()"
	for ((i = 0; i < N; i++)); do
		if ((i % 2 == 0)); then
			measure "$pair" A "$fa"
			measure "$pair" B "$fb"
		else
			measure "$pair" B "$fb"
			measure "$pair" A "$fa"
		fi
	done
}

phase_ms() { # RUNTIME STEP → median of PHASES_<RUNTIME>_<STEP> in ms
	local vals
	eval "vals=(\"\${PHASES_${1}_${2}[@]}\")"
	median_ms "${vals[@]}"
}

median_us() { # samples → their median, unrounded
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.3f", m }'
}

median_ms() { # microsecond samples → median in ms, 1 decimal
	awk -v m="$(median_us "$@")" 'BEGIN { printf "%.1f", m / 1000 }'
}

# ----------------------------------------------------------------- report
row() { # PAIR LABEL-A LABEL-B TARGET-KIND TARGET-VALUE
	local pair=$1 a b diff ratio verdict target sa sb
	eval "sa=(\"\${SAMPLES_${pair}_A[@]}\") sb=(\"\${SAMPLES_${pair}_B[@]}\")"
	((${#sa[@]} && ${#sb[@]})) || return 0 # not run (BENCH_ONLY)
	a=$(median_ms "${sa[@]}")
	b=$(median_ms "${sb[@]}")
	diff=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%+.1f", a - b }')
	ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')
	# The verdict is taken on the unrounded medians: 0.252 is not "0.25, met".
	local ua ub
	ua=$(median_us "${sa[@]}")
	ub=$(median_us "${sb[@]}")
	case $4 in
	ratio)
		target="A/B <= $5"
		verdict=$(awk -v a="$ua" -v b="$ub" -v t="$5" 'BEGIN { print (b > 0 && a / b <= t) ? "met" : "MISSED" }')
		;;
	plus)
		target="A <= B + $5 ms"
		verdict=$(awk -v a="$ua" -v b="$ub" -v t="$5" 'BEGIN { print (a - b <= t * 1000) ? "met" : "MISSED" }')
		;;
	none) target="-" verdict="(reference)" ;;
	esac
	printf '%-46s %9s %9s %9s %6s  %-15s %s\n' "$2 vs $3" "$a" "$b" "$diff" "$ratio" "$target" "$verdict"
}

p3_row() { # medians of RSS and PSS in MB, and the ratios (target 0.35)
	local field name ours go
	((${#P3_OURS[@]})) || return 0
	for field in 1 2; do
		name=$([[ $field == 1 ]] && echo RSS || echo PSS)
		ours=$(printf '%s\n' "${P3_OURS[@]}" | awk -v f="$field" '{ print $f }')
		go=$(printf '%s\n' "${P3_GO[@]}" | awk -v f="$field" '{ print $f }')
		# shellcheck disable=SC2086
		set -- "$(median_ms $ours)" "$(median_ms $go)"
		printf '%-46s %9s %9s %9s %6s  %-15s %s\n' "P3 shim $name (MB): ours vs Go runc shim" "$1" "$2" \
			"$(awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", a - b }')" \
			"$(awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }')" "A/B <= 0.35" \
			"$(awk -v a="$1" -v b="$2" 'BEGIN { print (a / b <= 0.35) ? "met" : "MISSED" }')"
	done
}

report() {
	echo "urunc benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -r), $(nproc) CPUs"
	echo "N=$N rounds (alternating order) after $WARMUP warm-up runs per side; medians in ms"
	echo "P1 monitor: no-op (a copy of /bin/true as qemu-system-x86_64); P2-P3 accelerator: $P2_ACCEL"
	if want P4 || want P5; then echo "P4-P5 test kernels: $MANY_ACCEL ($MANY_ACCEL_WHY)"; fi
	echo "P4: $P4_COUNT running containers per side; P5: $P5_COUNT containers per side, started one by one"
	echo
	printf '%-46s %9s %9s %9s %6s  %-15s %s\n' "A vs B" "A (ms)" "B (ms)" "A-B" "A/B" "target" ""
	row P1 "P1 urunc, no-op VMM" "runc /bin/true" ratio 0.25
	row P2FL "P2 floor: ctr run runc /bin/true" "bare" none
	row P2TK "P2 ctr run test kernel, our shim" "bare QEMU" plus 60
	row P2SH "P2 test kernel via our shim" "via Go runc shim" ratio 1.00
	row P2LX "P2 ctr run Linux guest, our shim" "bare QEMU" ratio 1.10
	row P2MV "P2 test kernel, qemuMachine=microvm" "pc" none
	row P1AB "P1 this urunc" "baseline urunc" ratio 1.00
	row P2AB "P2 test kernel, this urunc" "baseline urunc" ratio 1.00
	p3_row
	p4_rows
	p5_rows
	echo
	echo "P1: create+start+delete --force, each runtime with its own --root; P2: ctr run --rm"
	echo "through our shim (io.containerd.urunc.v2) vs the same QEMU argv bare; P2 floor and P2 this"
	echo "urunc vs baseline: through containerd's runc shim (the runtime as --runc-binary)."
	local rt
	for rt in urunc runc new base; do
		want P1 || break
		[[ $rt == urunc || $rt == runc || -n $BASELINE ]] || break
		printf 'P1 %-5s step medians: create %s, start %s, delete %s ms\n' "$rt" \
			"$(phase_ms "$rt" create)" "$(phase_ms "$rt" start)" "$(phase_ms "$rt" delete)"
	done
	echo
	echo "raw samples (ms):"
	local pair side vals
	for pair in P1 P1AB P2FL P2TK P2SH P2LX P2MV P2AB; do
		for side in A B; do
			eval "vals=(\"\${SAMPLES_${pair}_${side}[@]}\")"
			((${#vals[@]})) || continue
			printf '  %-5s %s: %s\n' "$pair" "$side" "$(printf '%s\n' "${vals[@]}" | awk '{ printf "%.1f ", $1 / 1000 }')"
		done
	done
}

p4_rows() { # MiB per container: MemAvailable drop and summed PSS (target 25 MiB)
	[[ -n ${P4_urunc_MEM:-} && -n ${P4_runc_MEM:-} ]] || return 0
	local kind mib
	for kind in MEM PSS; do
		eval "set -- \$P4_urunc_$kind \$P4_runc_$kind"
		mib=$(awk -v a="$1" 'BEGIN { printf "%.1f", a / 1024 }')
		printf '%-46s %9s %9s %9s %6s  %-15s %s\n' \
			"P4 $([[ $kind == MEM ]] && echo "MemAvailable drop" || echo "PSS") MiB/container: urunc vs runc" \
			"$mib" "$(awk -v b="$2" 'BEGIN { printf "%.1f", b / 1024 }')" \
			"$(awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", (a - b) / 1024 }')" \
			"$(awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')" "A <= 25 MiB" \
			"$(awk -v m="$mib" 'BEGIN { print (m <= 25) ? "met" : "MISSED" }')"
	done
}

p5_rows() { # containers started per second (target: urunc >= 0.8 x runc)
	[[ -n ${P5_urunc_US:-} && -n ${P5_runc_US:-} ]] || return 0
	local a b
	a=$(awk -v n="$P5_COUNT" -v us="$P5_urunc_US" 'BEGIN { printf "%.2f", n / (us / 1e6) }')
	b=$(awk -v n="$P5_COUNT" -v us="$P5_runc_US" 'BEGIN { printf "%.2f", n / (us / 1e6) }')
	printf '%-46s %9s %9s %9s %6s  %-15s %s\n' "P5 starts/s, $P5_COUNT running: urunc vs runc" \
		"$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%+.2f", a - b }')" \
		"$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')" "A/B >= 0.8" \
		"$(awk -v a="$a" -v b="$b" 'BEGIN { print (a / b >= 0.8) ? "met" : "MISSED" }')"
	printf '%-46s %9s %9s\n' "P5 ms per start, first tenth: urunc vs runc" "$P5_urunc_FIRST" "$P5_runc_FIRST"
	printf '%-46s %9s %9s\n' "P5 ms per start, last tenth: urunc vs runc" "$P5_urunc_LAST" "$P5_runc_LAST"
}

# Prints the report (and writes it to $BENCH_OUT), then exits.
finish() {
	local report_text
	report_text=$(report)
	echo "$report_text"
	if [[ -n ${BENCH_OUT:-} ]]; then
		printf '%s\n' "$report_text" >"$BENCH_OUT"
		log "report written to $BENCH_OUT"
	fi
	exit 0
}

# ----------------------------------------------------------------- P1 bundles
edit_spec() { # CONFIG.JSON PYTHON-STATEMENTS (c is the spec)
	python3 - "$1" "$2" <<-'EOF'
		import json, sys
		path, code = sys.argv[1], sys.argv[2]
		c = json.load(open(path))
		exec(code)
		json.dump(c, open(path, "w"), indent=2)
	EOF
}
log "P1: preparing the urunc and runc bundles in $W/p1"
mkdir -p "$W/p1/noop" "$W/p1/urunc/rootfs/boot" "$W/p1/runc/rootfs/bin" \
	"$W/p1/urunc-root" "$W/p1/runc-root" "$W/p1/new-root" "$W/p1/base-root"
cp /bin/true "$W/p1/noop/qemu-system-x86_64"
cp "$TESTKERNEL" "$W/p1/urunc/rootfs/boot/testkernel.elf"
cp "$BUSYBOX" "$W/p1/runc/rootfs/bin/busybox"
ln -s busybox "$W/p1/runc/rootfs/bin/true"
(cd "$W/p1/urunc" && runc spec)
(cd "$W/p1/runc" && runc spec)
edit_spec "$W/p1/urunc/config.json" "
c['process']['terminal'] = False
c['process']['args'] = ['hello']
c['linux']['cgroupsPath'] = '/$CG/urunc'
c['annotations'] = {
    'com.urunc.unikernel.unikernelType': 'unikraft',
    'com.urunc.unikernel.hypervisor': 'qemu',
    'com.urunc.unikernel.binary': '/boot/testkernel.elf',
}"
edit_spec "$W/p1/runc/config.json" "
c['process']['terminal'] = False
c['process']['args'] = ['/bin/true']
c['linux']['cgroupsPath'] = '/$CG/runc'"

# P1's rounds run in bench/p1_lifecycles.py, which starts each command with
# posix_spawn from one small process (as a shim starts its runtime), so a shell forking
# itself per command is not counted for either side. Sides: NAME:BINARY:ROOT:BUNDLE[:ENV].
# Fills SAMPLES_<pair>_A/B and PHASES_<name>_<step> (microseconds) for the report.
p1_pair() { # PAIR SIDE-A SIDE-B
	local pair=$1 name total c s d out
	out=$W/p1/$pair.samples
	python3 "$ROOT/bench/p1_lifecycles.py" "$N" "$WARMUP" "$W/p1/err" "$2" "$3" >"$out" ||
		die "$pair: a lifecycle failed (see above)"
	eval "SAMPLES_${pair}_A=() SAMPLES_${pair}_B=()"
	local a=${2%%|*}
	while read -r name total c s d; do
		if [[ $name == "$a" ]]; then
			eval "SAMPLES_${pair}_A+=($total)"
		else
			eval "SAMPLES_${pair}_B+=($total)"
		fi
		eval "PHASES_${name}_create+=($c) PHASES_${name}_start+=($s) PHASES_${name}_delete+=($d)"
	done <"$out"
}
P1_UENV="PATH=$W/p1/noop:$PATH|URUNC_QEMU_ACCEL=tcg"

if want P1; then
	log "P1: $WARMUP warm-up + $N rounds of create+start+delete (urunc no-op monitor vs runc /bin/true)"
	p1_pair P1 "urunc|$URUNC|$W/p1/urunc-root|$W/p1/urunc|$P1_UENV" \
		"runc|$(command -v runc)|$W/p1/runc-root|$W/p1/runc"
	[[ -z $(ls "$W/p1/urunc-root") && -z $(ls "$W/p1/runc-root") ]] || die "P1: containers were left behind"
	if [[ -n $BASELINE ]]; then
		log "P1: $WARMUP warm-up + $N rounds, this tree's urunc vs $BASELINE"
		p1_pair P1AB "new|$URUNC|$W/p1/new-root|$W/p1/urunc|$P1_UENV" \
			"base|$BASELINE|$W/p1/base-root|$W/p1/urunc|$P1_UENV"
		[[ -z $(ls "$W/p1/new-root") && -z $(ls "$W/p1/base-root") ]] || die "P1: containers were left behind"
	fi
fi
want P2 || want P3 || want P4 || want P5 || finish

# ----------------------------------------------------------------- P2 setup
log "P2: packing the guests and starting a private containerd (accel $P2_ACCEL)"
mkdir -p "$W/p2"
"$PACK" --kernel "$TESTKERNEL" --type unikraft --cmdline "hello" \
	--name urunc.local/bench/testkernel:latest --output "$W/p2/testkernel.tar" >/dev/null
# The same kernel on QEMU's microvm machine, chosen by the image (a reported row).
"$PACK" --kernel "$TESTKERNEL" --type unikraft --cmdline "hello" --qemu-machine microvm \
	--name urunc.local/bench/testkernel-microvm:latest --output "$W/p2/testkernel-microvm.tar" >/dev/null
"$PACK" --kernel "$VMLINUX" --initrd "$INITRD" --type linux --cmd /bin/report --cmd hello \
	--name urunc.local/bench/linux:latest --output "$W/p2/linux.tar" >/dev/null
# The accelerator and machine reach urunc through a configuration file of the bench's
# own (URUNC_CONFIG in containerd's environment, inherited by the shims and urunc):
# `urunc create` reads it each time, so P4 and P5 can switch to KVM by rewriting it.
unset URUNC_QEMU_ACCEL
export URUNC_CONFIG=$W/urunc-config.toml
urunc_config() { # ACCEL [MACHINE [EXTRA-ARGS-TOML]]
	printf '[monitors.qemu]\naccel = "%s"\n' "$1" >"$URUNC_CONFIG.tmp"
	[[ -z ${2:-} ]] || printf 'machine = "%s"\n' "$2" >>"$URUNC_CONFIG.tmp"
	[[ -z ${3:-} ]] || printf 'extra_args = %s\n' "$3" >>"$URUNC_CONFIG.tmp"
	mv "$URUNC_CONFIG.tmp" "$URUNC_CONFIG"
}
urunc_config "$P2_ACCEL"
# containerd puts <opt>/bin first on the PATH it gives shims: our shim and the urunc it
# runs are found there, and urunit beside that urunc (as beside $URUNC for the runc
# shim's runs), so both paths boot the Linux guest the same way.
mkdir -p "$W/containerd/opt/bin"
cp "$SHIM" "$URUNC" "$(dirname "$URUNC")/urunit" "$W/containerd/opt/bin/"
pc_start "$W/containerd" urunc-bench || die "containerd did not start"
for t in testkernel testkernel-microvm linux; do pc_ctr images import "$W/p2/$t.tar" >/dev/null; done

# A capture run through a wrapper around urunc that keeps a copy of urunc's state after
# `create`: its plan holds the exact monitor argv.
cat >"$W/p2/urunc-capture" <<EOF
#!/bin/sh
"$URUNC" "\$@"
rc=\$?
root=; prev=; last=; cmd=
for a in "\$@"; do
	[ "\$prev" = --root ] && root=\$a
	[ "\$a" = create ] && cmd=create
	[ "\$a" = start ] && cmd=start
	prev=\$a; last=\$a
done
if [ "\$cmd" = create ] && [ \$rc = 0 ]; then
	cp "\$root/\$last/urunc-state.json" "$W/p2/captured-\$last.json"
fi
# With urunit, the guest's initrd is urunc's (the image's plus urunit and its
# configuration, completed at start): keep it for the bare run.
if [ "\$cmd" = start ] && [ \$rc = 0 ] && [ -f "\$root/\$last/initrd" ]; then
	cp "\$root/\$last/initrd" "$W/p2/captured-\$last.initrd"
fi
exit \$rc
EOF
chmod +x "$W/p2/urunc-capture"

# bare_argv IMAGE-ID-PREFIX KERNEL [INITRD]: the captured argv, host paths for the guest files.
capture_argv() {
	local name=$1 image=$2 kernel=$3 initrd=${4:-} id=p2-capture-$1-$$
	PC_URUNC=$W/p2/urunc-capture pc_run "$image" "$id" >"$W/p2/capture-$name.out" 2>&1 ||
		die "P2 capture run of $image failed: $(tail -n 5 "$W/p2/capture-$name.out")"
	[[ -s $W/p2/captured-$id.json ]] || die "P2: urunc state of the capture run not found (urunc-state.json)"
	[[ -f $W/p2/captured-$id.initrd ]] && initrd=$W/p2/captured-$id.initrd
	python3 - "$W/p2/captured-$id.json" "$kernel" "$initrd" "$W/p2/exit-status-$name" >"$W/p2/argv-$name" <<-'EOF'
		import json, sys
		state, kernel, initrd, status = sys.argv[1:5]
		plan = json.load(open(state))["plan"]
		host = {"com.urunc.unikernel.binary": kernel, "com.urunc.unikernel.initrd": initrd}
		subst = {f["target"]: host[f["key"]] for f in plan["files"]}
		subst["/guest/initrd"] = initrd
		argv = [subst.get(a, a) for a in plan["argv"]]
		argv = [a.replace("path=/guest/exit-status", "path=" + status) for a in argv]
		sys.stdout.write("\0".join(argv) + "\0")
	EOF
}

P2_ID=0
p2_ctr() { # IMAGE MARKER
	local id=p2-$$-$((P2_ID++))
	pc_run "$1" "$id" >"$W/p2/out" 2>&1 && grep -q "$2" "$W/p2/out" && return 0
	echo "ctr run $1 $id:" >&2
	tail -n 20 "$W/p2/out" >&2
	return 1
}
# The bare side runs under the same `timeout` guard as every ctr call (pc_ctr), so the
# guard's own process start (about a millisecond) is on both sides of each pair.
p2_bare() { # MARKER ARGV...
	local marker=$1
	shift
	timeout "${PC_CTR_TIMEOUT:-120}" "$@" </dev/null >"$W/p2/out" 2>&1 &&
		grep -q "$marker" "$W/p2/out" && return 0
	echo "bare $*:" >&2
	tail -n 20 "$W/p2/out" >&2
	return 1
}

want P2 && {
capture_argv tk urunc.local/bench/testkernel:latest "$TESTKERNEL"
mapfile -d '' ARGV_TK <"$W/p2/argv-tk"
capture_argv lx urunc.local/bench/linux:latest "$VMLINUX" "$INITRD"
mapfile -d '' ARGV_LX <"$W/p2/argv-lx"
log "P2: bare test kernel: ${ARGV_TK[*]}"
log "P2: bare Linux guest: ${ARGV_LX[*]}"
}

# The floor of the containerd path: ctr run --rm of an ordinary runc container running
# busybox /bin/true (the P1 runc rootfs), vs the same /bin/true run bare.
p2_floor_ctr() {
	local id=p2-floor-$$-$((P2_ID++))
	pc_ctr run --rm --fifo-dir "$PC_DIR/fifo" --runtime io.containerd.runc.v2 \
		--rootfs "$W/p1/runc/rootfs" "$id" /bin/true </dev/null >"$W/p2/out" 2>&1 && return 0
	tail -n 20 "$W/p2/out" >&2
	return 1
}
p2_floor_bare() { timeout "${PC_CTR_TIMEOUT:-120}" "$W/p1/runc/rootfs/bin/true" </dev/null >/dev/null 2>&1; }

p2_tk_ctr() { p2_ctr urunc.local/bench/testkernel:latest URUNC-TESTKERNEL-DONE; }
p2_tk_base() { PC_URUNC=$BASELINE p2_tk_ctr; }
p2_shim() { # IMAGE MARKER: ctr run --rm through our shim
	local id=p2-shim-$$-$((P2_ID++))
	pc_ctr run --rm --fifo-dir "$PC_DIR/fifo" --runtime io.containerd.urunc.v2 \
		"$1" "$id" </dev/null >"$W/p2/out" 2>&1 && grep -q "$2" "$W/p2/out" && return 0
	echo "ctr run (our shim) $1 $id:" >&2
	tail -n 20 "$W/p2/out" >&2
	return 1
}
p2_tk_shim() { p2_shim urunc.local/bench/testkernel:latest URUNC-TESTKERNEL-DONE; }
p2_tk_microvm_shim() { p2_shim urunc.local/bench/testkernel-microvm:latest URUNC-TESTKERNEL-DONE; }
p2_lx_shim() { p2_shim urunc.local/bench/linux:latest URUNC-LINUX-GUEST-DONE; }
p2_tk_bare() { p2_bare URUNC-TESTKERNEL-DONE "${ARGV_TK[@]}"; }
p2_lx_bare() { p2_bare URUNC-LINUX-GUEST-DONE "${ARGV_LX[@]}"; }

if want P2; then
	log "P2: $WARMUP warm-up + $N rounds, containerd floor (ctr run --rm runc /bin/true vs bare /bin/true)"
	bench_pair P2FL p2_floor_ctr p2_floor_bare
	log "P2: $WARMUP warm-up + $N rounds, test kernel (ctr run --rm through our shim vs bare QEMU)"
	bench_pair P2TK p2_tk_shim p2_tk_bare
	log "P2: $WARMUP warm-up + $N rounds, test kernel (our shim vs containerd's runc shim driving urunc)"
	bench_pair P2SH p2_tk_shim p2_tk_ctr
	log "P2: $WARMUP warm-up + $N rounds, Linux guest (ctr run --rm through our shim vs bare QEMU)"
	bench_pair P2LX p2_lx_shim p2_lx_bare
	log "P2: $WARMUP warm-up + $N rounds, test kernel through our shim, qemuMachine=microvm vs pc"
	bench_pair P2MV p2_tk_microvm_shim p2_tk_shim
	if [[ -n $BASELINE ]]; then
		log "P2: $WARMUP warm-up + $N rounds, test kernel, this tree's urunc vs $BASELINE"
		bench_pair P2AB p2_tk_ctr p2_tk_base
	fi
fi

# ----------------------------------------------------------------- P3 shim memory
# kB of RSS and PSS of the shim serving container ID (its pid from the -id argument).
shim_mem() { # SHIM-NAME ID
	local pid
	pid=$(pgrep -f -- "$1 .*-id $2( |\$)" | head -n 1)
	[[ -n $pid ]] || pid=$(pgrep -f -- "$1.*$2" | head -n 1)
	[[ -n $pid ]] || return 1
	awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } END { print r, p }' "/proc/$pid/smaps_rollup"
}
p3_measure() { # RUNTIME-ARGS... -- IMAGE-OR-ROOTFS ID ARGS
	local id=$1 shim=$2
	shift 2
	pc_ctr run -d --fifo-dir "$PC_DIR/fifo" "$@" >/dev/null 2>&1 || return 1
	sleep 1
	P3_LAST=$(shim_mem "$shim" "$id") || P3_LAST=''
	pc_ctr task kill -s KILL "$id" >/dev/null 2>&1
	for _ in $(seq 50); do
		pc_ctr task ls 2>/dev/null | grep -q "^$id .*RUNNING" || break
		sleep 0.1
	done
	pc_ctr task delete "$id" >/dev/null 2>&1
	pc_ctr container rm "$id" >/dev/null 2>&1
	[[ -n $P3_LAST ]]
}
P3_RUNS=$(( N < 5 ? N : 5 ))
want P3 || P3_RUNS=0
((P3_RUNS == 0)) || log "P3: shim memory, $P3_RUNS runs each (our shim + test kernel vs Go shim + runc busybox)"
P3_OURS=() P3_GO=()
for ((i = 0; i < P3_RUNS; i++)); do
	id=p3-urunc-$$-$i
	p3_measure "$id" containerd-shim-urunc-v2 --runtime io.containerd.urunc.v2 \
		urunc.local/bench/testkernel:latest "$id" wait || die "P3: our shim run failed"
	P3_OURS+=("$P3_LAST")
	id=p3-runc-$$-$i
	p3_measure "$id" containerd-shim-runc-v2 --runtime io.containerd.runc.v2 \
		--rootfs "$W/p1/runc/rootfs" "$id" /bin/busybox sleep 600 || die "P3: Go shim run failed"
	P3_GO+=("$P3_LAST")
done

# ----------------------------------------------------------------- P4, P5
# Containers that stay up, started with ctr run -d through the runtime of KIND. Both
# take their rootfs as a directory (the P1 bundles'), so neither pays for a snapshot.
many_run() { # KIND ID
	case $1 in
	urunc) pc_ctr run -d --fifo-dir "$PC_DIR/fifo" --runtime io.containerd.urunc.v2 \
		--annotation com.urunc.unikernel.unikernelType=unikraft \
		--annotation com.urunc.unikernel.hypervisor=qemu \
		--annotation com.urunc.unikernel.binary=/boot/testkernel.elf \
		--rootfs "$W/p1/urunc/rootfs" "$2" wait ;;
	runc) pc_ctr run -d --fifo-dir "$PC_DIR/fifo" --runtime io.containerd.runc.v2 \
		--rootfs "$W/p1/runc/rootfs" "$2" /bin/busybox sleep 600 ;;
	esac </dev/null >/dev/null 2>"$W/many.err" && return 0
	echo "ctr run -d ($1) $2:" >&2
	tail -n 5 "$W/many.err" >&2
	return 1
}

# Starts COUNT containers of KIND named PREFIX-0.. one after the other; MANY_US is the
# wall time of all the starts, in microseconds.
many_start() { # KIND PREFIX COUNT
	local i t0 t1
	t0=${EPOCHREALTIME//[!0-9]/}
	MANY_EACH=()
	for ((i = 0; i < $3; i++)); do
		t1=${EPOCHREALTIME//[!0-9]/}
		many_run "$1" "$2-$i" || return 1
		MANY_EACH+=($((${EPOCHREALTIME//[!0-9]/} - t1)))
	done
	MANY_US=$((${EPOCHREALTIME//[!0-9]/} - t0))
}

many_running() { # PREFIX → how many of its tasks ctr task ls shows RUNNING
	pc_ctr task ls 2>/dev/null | awk -v p="$1-" 'index($1, p) == 1 && $3 == "RUNNING"' | wc -l
}

# kB of PSS of every process of the containers named PREFIX-*: the shims (found by
# their -id argument) and the tasks' processes (their cgroups hold the monitor, or
# sleep).
many_pss_kb() { # PREFIX
	local pid total=0 kb
	for pid in $(pgrep -f -- "containerd-shim-(urunc|runc)-v2 .*-id $1-[0-9]+( |\$)") \
		$(pc_ctr task ls 2>/dev/null | awk -v p="$1-" 'index($1, p) == 1 { print $2 }'); do
		kb=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null) || continue
		total=$((total + ${kb:-0}))
	done
	echo "$total"
}

# Deletes the containers PREFIX-0..COUNT-1 and checks that nothing of them is left.
many_delete() { # PREFIX COUNT
	local i id bad=0
	for ((i = 0; i < $2; i++)); do
		id=$1-$i
		pc_ctr task kill -s KILL "$id" >/dev/null 2>&1
	done
	for ((i = 0; i < $2; i++)); do
		id=$1-$i
		# The task must be stopped before it can be deleted: wait for the exit.
		for _ in $(seq 100); do
			pc_ctr task ls 2>/dev/null | grep -q "^$id .*RUNNING" || break
			sleep 0.05
		done
		pc_ctr task delete "$id" >/dev/null 2>"$W/many.err" || { bad=1; cat "$W/many.err" >&2; }
		pc_ctr container rm "$id" >/dev/null 2>"$W/many.err" || { bad=1; cat "$W/many.err" >&2; }
	done
	((bad == 0)) || { log "deleting the $1 containers reported errors"; return 1; }
	local left
	left=$( {
		pc_ctr task ls -q 2>/dev/null
		pc_ctr container ls -q 2>/dev/null
		ls /run/containerd/urunc/urunc-bench 2>/dev/null
	} | grep -c "^$1-" || true)
	((left == 0)) || { log "$left tasks, containers or urunc states of $1 left"; return 1; }
	for _ in $(seq 50); do # shims exit just after the delete
		pgrep -f -- "-id $1-[0-9]+( |\$)" >/dev/null || return 0
		sleep 0.1
	done
	log "processes of $1 left: $(pgrep -af -- "-id $1-[0-9]+( |\$)" | head -n 3)"
	return 1
}

mem_available_kb() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }

# P4: MemAvailable and PSS before/after COUNT running containers of KIND.
p4_side() { # KIND
	local prefix=p4-$1-$$ before after
	sync
	sleep 1
	before=$(mem_available_kb)
	many_start "$1" "$prefix" "$P4_COUNT" || die "P4: starting the $1 containers failed"
	sleep 2 # let the guests and shims settle
	(($(many_running "$prefix") == P4_COUNT)) || die "P4: not all $1 containers are running"
	after=$(mem_available_kb)
	eval "P4_${1}_MEM=$(((before - after) / P4_COUNT)) P4_${1}_PSS=$(($(many_pss_kb "$prefix") / P4_COUNT))"
	many_delete "$prefix" "$P4_COUNT" || die "P4: the $1 containers were not deleted cleanly"
}

# P5: the start rate of COUNT containers of KIND, all running at once, then deleted.
p5_side() { # KIND
	local prefix=p5-$1-$$ running
	many_start "$1" "$prefix" "$P5_COUNT" || die "P5: starting the $1 containers failed"
	running=$(many_running "$prefix")
	((running == P5_COUNT)) || die "P5: $running of $P5_COUNT $1 containers are running"
	eval "P5_${1}_US=$MANY_US P5_${1}_RUNNING=$running"
	# The first and the last tenth: does starting slow down as containers accumulate?
	local tenth=$(((P5_COUNT + 9) / 10))
	eval "P5_${1}_FIRST=$(median_ms "${MANY_EACH[@]:0:tenth}") P5_${1}_LAST=$(median_ms "${MANY_EACH[@]: -tenth}")"
	many_delete "$prefix" "$P5_COUNT" || die "P5: the $1 containers were not deleted cleanly"
}

# Does the test kernel boot under KVM here? `/dev/kvm` existing is not enough (a
# software KVM may run only tiny guests): boot it bare on -M microvm with urunc's KVM
# CPU options and wait for its `waiting` line. PVM refuses `-cpu host` (QEMU cannot
# set MSR_IA32_ARCH_CAPABILITIES and aborts); if that is the only problem, the probe
# retries with that feature off, which urunc then gets through extra_args (a later
# -cpu replaces the earlier one).
MANY_EXTRA=''
kvm_boots() { # CPU-ARGS...
	local out=$W/kvm-probe.out pid i
	qemu-system-x86_64 -machine microvm -accel kvm "$@" -m 256M -smp 1 -nodefaults \
		-no-user-config -display none -serial stdio -no-reboot -kernel "$TESTKERNEL" \
		-append wait </dev/null >"$out" 2>&1 &
	pid=$!
	for ((i = 0; i < 100; i++)); do
		grep -q '^waiting' "$out" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	grep -q '^waiting' "$out"
}
kvm_probe() {
	[[ -c /dev/kvm ]] || { MANY_ACCEL_WHY="no /dev/kvm"; return 1; }
	if kvm_boots -cpu host; then
		MANY_ACCEL_WHY="probe: the test kernel boots under KVM; guests on -M microvm"
	elif kvm_boots -cpu host -cpu host,-arch-capabilities; then
		MANY_ACCEL_WHY="probe: the test kernel boots under KVM with -cpu host,-arch-capabilities (not with -cpu host); guests on -M microvm with that -cpu"
		MANY_EXTRA='["-cpu", "host,-arch-capabilities"]'
	else
		MANY_ACCEL_WHY="probe: the test kernel did not boot under KVM within 2 s"
		return 1
	fi
}
if want P4 || want P5; then
	if [[ $MANY_ACCEL == tcg ]]; then
		:
	elif kvm_probe; then
		MANY_ACCEL=kvm
	elif [[ $MANY_ACCEL == kvm ]]; then
		die "BENCH_MANY_ACCEL=kvm, but $MANY_ACCEL_WHY"
	else
		MANY_ACCEL=tcg
	fi
	log "P4, P5: test kernels under $MANY_ACCEL ($MANY_ACCEL_WHY)"
	if [[ $MANY_ACCEL == kvm ]]; then urunc_config kvm microvm "$MANY_EXTRA"; else urunc_config tcg; fi
fi

if want P4; then
	log "P4: host memory of $P4_COUNT running containers (runc busybox sleep, then urunc test kernel)"
	p4_side runc
	p4_side urunc
fi
if want P5; then
	log "P5: starting $P5_COUNT containers one after the other (urunc test kernel, then runc busybox sleep)"
	p5_side urunc
	p5_side runc
fi
finish
