#!/usr/bin/env bash
# urunc node installer: copies urunc's release binaries onto a node and adds the `urunc`
# runtime handler to containerd's configuration; `uninstall` undoes both.
#
#   install.sh install   [options]
#   install.sh uninstall [options]
#
# The urunc-deploy DaemonSet (urunc-deploy.yaml) runs it in a privileged pod with the
# node's root mounted at /host; it also runs as root directly on a node
# (--host-root /). See docs/kubernetes.md.
#
# Options (environment variables in brackets):
#   --host-root DIR        the node's root directory [HOST_ROOT, default /host]
#   --artifacts DIR        where the binaries are [ARTIFACTS, default the script's directory]:
#                            urunc_static_<arch>, containerd-shim-urunc-v2_<arch>,
#                            urunit_static_<arch> (from `make dist`), urunc-deploy
#                            (urunc-deploy_static_<arch>, or $URUNC_DEPLOY), and optionally
#                            hypervisors/<file> (e.g. a static qemu-system-x86_64)
#   --config PATH          containerd's configuration, inside the host root
#                          [CONTAINERD_CONFIG, default /etc/containerd/config.toml]
#   --containerd-version V the node's containerd version, for a config that does not
#                          exist yet [CONTAINERD_VERSION; default: asked from the node's
#                          containerd --version]
#   --restrict-oom-score-adj  also set restrict_oom_score_adj = true
#                          [RESTRICT_OOM_SCORE_ADJ=true]
#   --restart-cmd CMD      how to restart containerd when its config changed
#                          [RESTART_CMD; default: systemctl restart containerd in the
#                          node's namespaces (nsenter -t 1) for host root /host or /]
#   --no-restart           do not restart containerd [NO_RESTART=true]
#
# Idempotent: a second `install` copies nothing, leaves the config byte for byte and
# does not restart containerd. Files it installs are listed in
# <host>/var/lib/urunc-deploy/installed, which `uninstall` removes (and only those).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOST_ROOT=${HOST_ROOT:-/host}
ARTIFACTS=${ARTIFACTS:-$SCRIPT_DIR}
CONTAINERD_CONFIG=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-}
RESTRICT_OOM_SCORE_ADJ=${RESTRICT_OOM_SCORE_ADJ:-false}
RESTART_CMD=${RESTART_CMD:-}
NO_RESTART=${NO_RESTART:-false}
BIN_DIR=/usr/local/bin
STATE_DIR=/var/lib/urunc-deploy

say() { printf 'urunc-deploy: %s\n' "$*"; }
die() {
	printf 'urunc-deploy: error: %s\n' "$*" >&2
	exit 1
}
usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
	exit "${1:-0}"
}

(($#)) || usage 2
ACTION=$1
shift
case $ACTION in
install | uninstall) ;;
-h | --help | help) usage 0 ;;
*) die "unknown action '$ACTION': use install or uninstall" ;;
esac
while (($#)); do
	case $1 in
	--host-root) HOST_ROOT=$2 && shift ;;
	--artifacts) ARTIFACTS=$2 && shift ;;
	--config) CONTAINERD_CONFIG=$2 && shift ;;
	--containerd-version) CONTAINERD_VERSION=$2 && shift ;;
	--restrict-oom-score-adj) RESTRICT_OOM_SCORE_ADJ=true ;;
	--restart-cmd) RESTART_CMD=$2 && shift ;;
	--no-restart) NO_RESTART=true ;;
	-h | --help) usage 0 ;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
	shift
done

[[ -d $HOST_ROOT ]] || die "host root $HOST_ROOT is not a directory"
HOST_ROOT=$(cd "$HOST_ROOT" && pwd)
ROOT=${HOST_ROOT%/} # "" for /
ARCH=$(uname -m | sed -e 's/x86_64/amd64/' -e 's/aarch64/arm64/')
CONFIG=$ROOT$CONTAINERD_CONFIG
MANIFEST=$ROOT$STATE_DIR/installed

# The config patcher.
PATCHER=${URUNC_DEPLOY:-}
if [[ -z $PATCHER ]]; then
	for p in "$ARTIFACTS/urunc-deploy_static_$ARCH" "$ARTIFACTS/urunc-deploy"; do
		[[ -x $p ]] && PATCHER=$p && break
	done
fi
[[ -n $PATCHER && -x $PATCHER ]] ||
	die "no urunc-deploy binary in $ARTIFACTS (urunc-deploy_static_$ARCH) and URUNC_DEPLOY is not set"

# Restarting containerd: only when asked or when this is the node's real root.
restart_containerd() {
	if [[ $NO_RESTART == true ]]; then
		say "containerd's configuration changed: restart containerd to use it (--no-restart given)"
		return
	fi
	if [[ -z $RESTART_CMD ]]; then
		if [[ $HOST_ROOT == / || $HOST_ROOT == /host ]]; then
			RESTART_CMD='nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl restart containerd'
		else
			say "containerd's configuration changed; not restarting it (host root $HOST_ROOT: give --restart-cmd)"
			return
		fi
	fi
	say "restarting containerd: $RESTART_CMD"
	bash -c "$RESTART_CMD" || die "restarting containerd failed: $RESTART_CMD"
}

containerd_version() {
	[[ -n $CONTAINERD_VERSION ]] && return
	if [[ $HOST_ROOT == / ]] && command -v containerd >/dev/null; then
		CONTAINERD_VERSION=$(containerd --version)
	elif [[ -x $ROOT/usr/bin/containerd || -x $ROOT/usr/local/bin/containerd ]]; then
		CONTAINERD_VERSION=$(nsenter --target 1 --mount -- containerd --version 2>/dev/null ||
			chroot "$HOST_ROOT" containerd --version 2>/dev/null || true)
	fi
}

# patch_args VAR: the urunc-deploy arguments, into the array named VAR.
patch_args() {
	local -n _out=$1
	_out=(--config "$CONFIG")
	containerd_version
	[[ -n $CONTAINERD_VERSION ]] && _out+=(--containerd-version "$CONTAINERD_VERSION")
	[[ $RESTRICT_OOM_SCORE_ADJ == true ]] && _out+=(--restrict-oom-score-adj)
	return 0
}

# install_file SRC DEST: copies SRC to DEST (mode 0755) unless DEST has the same bytes;
# through a temporary file and a rename, so a running binary is never overwritten in place.
CHANGED_FILES=0
install_file() {
	local src=$1 dest=$2
	if [[ -f $ROOT$dest ]] && cmp -s "$src" "$ROOT$dest"; then
		say "$dest is up to date"
	else
		mkdir -p "$(dirname "$ROOT$dest")"
		cp "$src" "$ROOT$dest.urunc-deploy.tmp"
		chmod 0755 "$ROOT$dest.urunc-deploy.tmp"
		mv -f "$ROOT$dest.urunc-deploy.tmp" "$ROOT$dest"
		say "installed $dest"
		CHANGED_FILES=$((CHANGED_FILES + 1))
	fi
	grep -qxF "$dest" "$MANIFEST" 2>/dev/null || echo "$dest" >>"$MANIFEST"
}

do_install() {
	local src
	# Everything is checked before anything is changed.
	declare -A files=(
		[urunc]=urunc_static_$ARCH
		[containerd-shim-urunc-v2]=containerd-shim-urunc-v2_$ARCH
		[urunit]=urunit_static_$ARCH
	)
	for name in "${!files[@]}"; do
		src=$ARTIFACTS/${files[$name]}
		[[ -f $src ]] || die "$src is missing (make dist builds it)"
	done
	local args=()
	patch_args args
	"$PATCHER" configure "${args[@]}" --dry-run >/dev/null

	mkdir -p "$ROOT$STATE_DIR"
	[[ -f $MANIFEST ]] || : >"$MANIFEST"
	for name in urunc containerd-shim-urunc-v2 urunit; do
		install_file "$ARTIFACTS/${files[$name]}" "$BIN_DIR/$name"
	done
	# Monitors shipped in the artefacts (optional): the node's own QEMU, from its
	# distribution, is the usual choice (see docs/kubernetes.md).
	if [[ -d $ARTIFACTS/hypervisors ]]; then
		for src in "$ARTIFACTS"/hypervisors/*; do
			[[ -f $src ]] || continue
			install_file "$src" "$BIN_DIR/$(basename "$src")"
		done
	fi

	local out
	out=$("$PATCHER" configure "${args[@]}")
	sed 's/^/urunc-deploy: /' <<<"$out"
	if [[ $out == changed* ]]; then
		restart_containerd
	fi
	if ((CHANGED_FILES == 0)) && [[ $out != changed* ]]; then
		say "nothing to do: urunc is installed and configured"
	fi
}

do_uninstall() {
	local args=() out dest
	patch_args args
	out=$("$PATCHER" unconfigure "${args[@]}")
	sed 's/^/urunc-deploy: /' <<<"$out"
	if [[ -f $MANIFEST ]]; then
		while IFS= read -r dest; do
			[[ -n $dest ]] || continue
			if [[ -e $ROOT$dest ]]; then
				rm -f "$ROOT$dest"
				say "removed $dest"
			fi
		done <"$MANIFEST"
		rm -f "$MANIFEST"
		rmdir "$ROOT$STATE_DIR" 2>/dev/null || true
	fi
	if [[ $out == changed* ]]; then
		restart_containerd
	fi
}

case $ACTION in
install) do_install ;;
uninstall) do_uninstall ;;
esac
