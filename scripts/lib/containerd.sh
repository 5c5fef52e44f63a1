# shellcheck shell=bash
# A private containerd for scripts/demo.sh and bench/run.sh (source this file; root).
#
#   pc_start DIR NS     start containerd with root, state, opt, sockets and log all in DIR
#                       (created if missing), ctr namespace NS; sets PC_DIR PC_NS PC_PID
#                       PC_SOCK PC_LOG. Its environment is the caller's: the shim inherits
#                       it and passes it to the runtime (URUNC_QEMU_ACCEL, PATH).
#   pc_ctr ARGS...      ctr against it, killed after ${PC_CTR_TIMEOUT:-120} s
#   pc_run IMG ID       ctr run --rm of IMG as container ID through containerd's runc shim
#                       driving $PC_URUNC (stdin /dev/null, FIFOs inside DIR)
#   pc_stop             remove every container of its namespace, stop containerd (by
#                       PID), kill processes left with DIR in their arguments (shims),
#                       `urunc delete --force` what urunc ($PC_URUNC) still has state for
#                       with a bundle below DIR, unmount what is mounted below DIR,
#                       remove the namespace's empty parent cgroups. Prints a line for
#                       each thing it had to force. Returns 1 if mounts are left.
#
# containerd runs in a session of its own, so a Ctrl-C at the terminal reaches ctr and
# the guest but not containerd, which the cleanup still needs.
#
# Config as crates/test-harness/src/containerd.rs writes it: CRI and the snapshotters
# that cannot work here are disabled; the opt plugin's path is private too.

PC_DIR='' PC_NS='' PC_PID='' PC_SOCK='' PC_LOG=''
PC_URUNC=${PC_URUNC:-}

pc_ms() { echo $((${EPOCHREALTIME//[!0-9]/} / 1000)); }

pc_start() {
	PC_DIR=$1 PC_NS=$2
	PC_SOCK=$PC_DIR/containerd.sock PC_LOG=$PC_DIR/containerd.log
	mkdir -p "$PC_DIR"/{root,state,opt,fifo}
	cat >"$PC_DIR/config.toml" <<-EOF
		version = 2
		root = "$PC_DIR/root"
		state = "$PC_DIR/state"
		disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

		[grpc]
		  address = "$PC_SOCK"

		[ttrpc]
		  address = "$PC_SOCK.ttrpc"

		[debug]
		  address = ""
		  level = "info"

		[metrics]
		  address = ""

		[plugins]
		  [plugins."io.containerd.internal.v1.opt"]
		    path = "$PC_DIR/opt"
	EOF
	setsid containerd --config "$PC_DIR/config.toml" </dev/null >"$PC_LOG" 2>&1 &
	PC_PID=$!
	local deadline=$(($(pc_ms) + 10000))
	until [[ -S $PC_SOCK ]] && pc_ctr_timeout 3 version >/dev/null 2>&1; do
		if ! kill -0 "$PC_PID" 2>/dev/null; then
			echo "containerd exited at start; the end of its log:" >&2
			tail -n 20 "$PC_LOG" >&2
			PC_PID=''
			return 1
		fi
		if (($(pc_ms) > deadline)); then
			echo "containerd did not answer on $PC_SOCK within 10 s; log: $PC_LOG" >&2
			return 1
		fi
		sleep 0.05
	done
}

pc_ctr_timeout() {
	local t=$1
	shift
	timeout "$t" ctr --address "$PC_SOCK" --namespace "$PC_NS" --connect-timeout 5s "$@"
}

pc_ctr() { pc_ctr_timeout "${PC_CTR_TIMEOUT:-120}" "$@"; }

pc_run() {
	pc_ctr run --rm --fifo-dir "$PC_DIR/fifo" --runtime io.containerd.runc.v2 \
		--runc-binary "$PC_URUNC" "$1" "$2" </dev/null
}

# PIDs of processes other than this shell with $1 in one of their arguments.
pc_pids_with_arg() {
	local f pid
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}
		pid=${pid%/cmdline}
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		if tr '\0' '\n' 2>/dev/null <"$f" | grep -qF -- "$1"; then echo "$pid"; fi
	done
}

# SIGTERM, then SIGKILL if still there after 5 s.
pc_kill() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# Mount points below $1, deepest first.
pc_mounts_under() {
	awk -v p="$1/" 'index($5, p) == 1 { print length($5) " " $5 }' /proc/self/mountinfo |
		sort -rn | cut -d' ' -f2-
}

pc_stop() {
	local id pid m tries ids=()
	[[ -n $PC_DIR ]] || return 0
	if [[ -n $PC_PID ]] && kill -0 "$PC_PID" 2>/dev/null; then
		mapfile -t ids < <(pc_ctr_timeout 15 containers ls -q 2>/dev/null)
		for id in "${ids[@]}"; do
			echo "removing container $id"
			pc_ctr_timeout 15 tasks kill -s KILL "$id" >/dev/null 2>&1
			pc_ctr_timeout 15 tasks delete --force "$id" >/dev/null 2>&1
			pc_ctr_timeout 15 containers delete "$id" >/dev/null 2>&1
		done
		pc_kill "$PC_PID"
		wait "$PC_PID" 2>/dev/null
	fi
	PC_PID=''
	for pid in $(pc_pids_with_arg "$PC_DIR/"); do
		echo "killed leftover process $pid: $(tr '\0' ' ' 2>/dev/null </proc/"$pid"/cmdline | cut -c1-70)"
		pc_kill "$pid"
	done
	# urunc state of our containers (their bundles are below PC_DIR) that the shim did
	# not get to delete, e.g. because containerd was gone.
	if [[ -n $PC_URUNC ]]; then
		for m in /run/containerd/runc/"$PC_NS"/*/urunc-state.json; do
			[[ -f $m ]] && grep -qF "\"$PC_DIR/" "$m" || continue
			id=$(basename "$(dirname "$m")")
			echo "deleting leftover urunc container $id"
			"$PC_URUNC" --root "/run/containerd/runc/$PC_NS" delete --force "$id" >/dev/null 2>&1
		done
	fi
	rmdir "/run/containerd/runc/$PC_NS" 2>/dev/null
	for m in /sys/fs/cgroup/"$PC_NS" /sys/fs/cgroup/*/"$PC_NS"; do
		[[ -d $m ]] && rmdir "$m" 2>/dev/null
	done
	for ((tries = 0; tries < 5; tries++)); do
		m=$(pc_mounts_under "$PC_DIR")
		[[ -z $m ]] && break
		while IFS= read -r m; do umount -l "$m" 2>/dev/null; done <<<"$m"
	done
	m=$(pc_mounts_under "$PC_DIR")
	if [[ -n $m ]]; then
		echo "still mounted below $PC_DIR: $(tr '\n' ' ' <<<"$m")"
		return 1
	fi
	return 0
}
