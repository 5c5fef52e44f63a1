#!/usr/bin/env bash
# urunc demo: boot a unikernel and a Linux guest as containers, offline.
#
#   sudo make demo          (or, as root:  bash scripts/demo.sh)
#
# On a Debian 12 machine this
#   1. installs the Debian packages it needs if they are missing (qemu-system-x86,
#      containerd, runc, busybox-static, cpio, python3);
#   2. builds urunc and urunc-pack in release mode;
#   3. builds the two test guests (fixtures/): a tiny PVH test kernel, and a Debian
#      kernel with a busybox initrd (the first run downloads the kernel .deb, ~70 MB,
#      with apt-get; later runs use the cache in /var/cache/urunc-fixtures);
#   4. packs each guest into an OCI image with urunc-pack;
#   5. starts a private containerd (everything in one temporary directory), imports the
#      images and runs each with `ctr run`, containerd's own runc shim driving urunc;
#   6. removes everything it made on exit, also on failure or Ctrl-C.
# Nothing but Debian packages comes from the network. Running it again is safe.
#
# Environment:
#   URUNC_QEMU_ACCEL=kvm|tcg  QEMU accelerator (default: kvm when the CPU has hardware
#                             virtualisation (vmx/svm) and /dev/kvm is usable, else tcg)
#   URUNC_FIXTURES            fixture cache (default /var/cache/urunc-fixtures)
#   CARGO                     cargo to use (default: cargo on PATH, or the invoking
#                             user's ~/.cargo/bin/cargo under sudo)
#   DEMO_KEEP=1               keep the temporary directory (images, containerd's log)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/containerd.sh
source "$ROOT/scripts/lib/containerd.sh"
NS=urunc-demo
URUNC=$ROOT/target/release/urunc
PACK=$ROOT/target/release/urunc-pack
PC_URUNC=$URUNC

if [[ -t 1 ]]; then
	BOLD=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' GREEN=$'\e[32m' RESET=$'\e[0m'
else
	BOLD='' DIM='' RED='' GREEN='' RESET=''
fi
step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }
info() { printf '    %s\n' "$*"; }
die() {
	printf '%sdemo: error: %s%s\n' "$RED" "$*" "$RESET" >&2
	exit 1
}
secs() { printf '%d.%02d s' $(($1 / 1000)) $((($1 % 1000) / 10)); }

((EUID == 0)) || die "run as root: sudo make demo (containers need root here)"
T0=$(pc_ms)

# ----------------------------------------------------------------- accelerator
ACCEL=${URUNC_QEMU_ACCEL:-}
if [[ -z $ACCEL ]]; then
	if [[ -r /dev/kvm && -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		ACCEL=kvm
		WHY="the CPU has hardware virtualisation and /dev/kvm is usable"
	else
		ACCEL=tcg
		WHY="no usable hardware virtualisation: no vmx/svm in /proc/cpuinfo, or no /dev/kvm"
	fi
else
	WHY="URUNC_QEMU_ACCEL is set"
fi
[[ $ACCEL == kvm || $ACCEL == tcg ]] || die "URUNC_QEMU_ACCEL=$ACCEL: expected kvm or tcg"
export URUNC_QEMU_ACCEL=$ACCEL

# ----------------------------------------------------------------- cleanup
WORK=''
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if declare -F cni_cleanup >/dev/null; then cni_cleanup; fi
	if [[ -n $WORK ]]; then
		step "Cleaning up"
		[[ -n $PC_PID ]] && info "stopping containerd (pid $PC_PID) and removing the containers"
		pc_stop >"$WORK/cleanup.log"
		sed 's/^/    /' "$WORK/cleanup.log"
		if [[ -n ${DEMO_KEEP:-} ]]; then
			info "kept $WORK (DEMO_KEEP is set)"
		elif [[ -z $(pc_mounts_under "$WORK") ]]; then
			rm -rf "$WORK"
			info "removed $WORK"
		fi
	fi
	if ((rc == 0)); then
		printf '\n%sDemo finished in %s.%s\n' "$GREEN" "$(secs $(($(pc_ms) - T0)))" "$RESET"
	elif ((rc == 130 || rc == 143)); then
		printf '\n%sDemo interrupted.%s\n' "$RED" "$RESET" >&2
	else
		printf '\n%sDemo failed (exit status %d).%s\n' "$RED" "$rc" "$RESET" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----------------------------------------------------------------- packages
step "Checking Debian packages"
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
PACKAGES=(qemu-system-x86 containerd runc busybox-static cpio python3 containernetworking-plugins iproute2 make)
missing=()
for p in "${PACKAGES[@]}"; do
	if [[ $p == python3 ]] && command -v python3 >/dev/null; then continue; fi
	installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
	info "installing ${missing[*]} (apt-get update, then apt-get install)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
	info "all present: ${PACKAGES[*]}"
fi
for c in qemu-system-x86_64 containerd ctr runc; do
	command -v "$c" >/dev/null || die "$c not found after installing its package"
done

# ----------------------------------------------------------------- build
step "Building urunc, urunc-pack and urunit (make build)"
CARGO=${CARGO:-}
if [[ -z $CARGO ]]; then
	if command -v cargo >/dev/null; then
		CARGO=$(command -v cargo)
	else
		# Under sudo, PATH is sudo's: look for the invoking user's rustup toolchain.
		for home in ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)"} /root; do
			if [[ -x $home/.cargo/bin/cargo ]]; then
				CARGO=$home/.cargo/bin/cargo
				export CARGO_HOME=${CARGO_HOME:-$home/.cargo}
				if [[ -d $home/.rustup ]]; then export RUSTUP_HOME=${RUSTUP_HOME:-$home/.rustup}; fi
				export PATH=$home/.cargo/bin:$PATH
				break
			fi
		done
	fi
fi
[[ -n $CARGO ]] || die "cargo not found: install Rust 1.80 or newer (rustup), or set CARGO"
info "(a first build takes a few minutes: release builds use LTO)"
t=$(pc_ms)
(cd "$ROOT" && make --quiet build CARGO="$CARGO" >/dev/null)
info "built $URUNC, $PACK and urunit (the guest init) in $(secs $(($(pc_ms) - t)))"

# ----------------------------------------------------------------- fixtures
step "Building the test guests (fixtures/)"
info "test kernel: a 9 KB PVH kernel that prints its command line and powers off"
t=$(pc_ms)
TESTKERNEL=$(bash "$ROOT/fixtures/build-testkernel.sh" 2> >(sed 's/^/      /' >&2) | tail -n1)
[[ -s $TESTKERNEL ]] || die "no test kernel at '$TESTKERNEL'"
info "  $TESTKERNEL ($(secs $(($(pc_ms) - t))))"
info "Linux guest: Debian's kernel + a busybox initrd that prints its argv and env"
if [[ ! -s ${URUNC_FIXTURES:-/var/cache/urunc-fixtures}/linux/vmlinux ]]; then
	info "  first run: downloading the Debian linux-image .deb (~70 MB) with apt-get"
fi
t=$(pc_ms)
LINUXDIR=$(bash "$ROOT/fixtures/build-linux-guest.sh" 2> >(sed 's/^/      /' >&2) | tail -n1)
[[ -s $LINUXDIR/vmlinux && -s $LINUXDIR/initrd.cpio ]] || die "no Linux guest in '$LINUXDIR'"
info "  $LINUXDIR/{vmlinux,initrd.cpio} ($(secs $(($(pc_ms) - t))))"

# ----------------------------------------------------------------- images
WORK=$(mktemp -d /tmp/urunc-demo.XXXXXX)
mkdir -p "$WORK/images"
step "Packing the guests into OCI images (urunc-pack)"
IMG_UK=urunc.local/demo/testkernel:latest
IMG_LX=urunc.local/demo/linux-hello:latest
info "the test kernel as a 'unikraft' guest:"
info "  urunc-pack --kernel testkernel.elf --type unikraft --cmdline 'hello from a unikernel'"
line=$("$PACK" --kernel "$TESTKERNEL" --type unikraft --cmdline "hello from a unikernel" \
	--name "$IMG_UK" --output "$WORK/images/testkernel.tar")
info "  $line"
info "the Linux guest as a 'linux' guest, its Cmd the init program and its arguments:"
info "  urunc-pack --kernel vmlinux --initrd initrd.cpio --type linux --cmd /bin/report --cmd hello ..."
t=$(pc_ms)
line=$("$PACK" --kernel "$LINUXDIR/vmlinux" --initrd "$LINUXDIR/initrd.cpio" --type linux \
	--cmd /bin/report --cmd hello --cmd from --cmd a --cmd VM \
	--name "$IMG_LX" --output "$WORK/images/linux-hello.tar")
info "  $line"
info "  (packed in $(secs $(($(pc_ms) - t))); each image also carries /urunc.json)"

# The web server guest: the same kernel, and an initrd that adds a page and the
# virtio-net modules (listed in load-order.txt, which urunit loads) to the busybox one.
# The kernel accepts concatenated cpio archives.
IMG_WEB=urunc.local/demo/web:latest
info "a Linux web server: the busybox initrd plus /www/index.html and the virtio-net modules"
mkdir -p "$WORK/web/www" "$WORK/web/lib/modules"
echo "<h1>Hello from a urunc VM</h1>" >"$WORK/web/www/index.html"
NET_MODULES=(virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio virtio_pci failover net_failover virtio_net)
for m in "${NET_MODULES[@]}"; do cp "$LINUXDIR/modules/$m.ko" "$WORK/web/lib/modules/"; done
printf '%s\n' "${NET_MODULES[@]}" >"$WORK/web/lib/modules/load-order.txt"
(cd "$WORK/web" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$WORK/web-extra.cpio"
cat "$LINUXDIR/initrd.cpio" "$WORK/web-extra.cpio" >"$WORK/web-initrd.cpio"
line=$("$PACK" --kernel "$LINUXDIR/vmlinux" --initrd "$WORK/web-initrd.cpio" --type linux \
	--cmd /bin/busybox --cmd httpd --cmd -f --cmd -p --cmd 80 --cmd -h --cmd /www \
	--name "$IMG_WEB" --output "$WORK/images/web.tar")
info "  $line"

# ----------------------------------------------------------------- containerd
step "Starting a private containerd"
t=$(pc_ms)
pc_start "$WORK/containerd" "$NS" || die "containerd did not start"
info "containerd pid $PC_PID, socket $PC_SOCK, ready in $(secs $(($(pc_ms) - t)))"
info "urunc will run QEMU with URUNC_QEMU_ACCEL=$ACCEL ($WHY)"

step "Importing the images"
for tar in "$WORK/images/testkernel.tar" "$WORK/images/linux-hello.tar" "$WORK/images/web.tar"; do
	pc_ctr images import "$tar" | sed 's/^/    /'
done

# ----------------------------------------------------------------- runs
FAILED=0
run_guest() { # TITLE IMAGE MARKER
	local title=$1 image=$2 marker=$3 id out rc ms t
	id=demo-$(basename "${image%%:*}")-$$
	step "$title"
	info "ctr run --rm --runtime io.containerd.runc.v2 --runc-binary $URUNC $image $id"
	info "${DIM}(containerd's runc shim calls urunc create/start/delete; the container process is QEMU)${RESET}"
	printf '    %s--- guest console ---%s\n' "$DIM" "$RESET"
	out=$WORK/$id.out
	t=$(pc_ms)
	set +e
	pc_run "$image" "$id" 2>&1 | tr -d '\r' | tee "$out" | sed 's/^/    | /'
	rc=${PIPESTATUS[0]}
	set -e
	ms=$(($(pc_ms) - t))
	printf '    %s--- end of console ---%s\n' "$DIM" "$RESET"
	if ((rc == 0)) && grep -q "$marker" "$out"; then
		info "${GREEN}ok${RESET}: booted, ran and exited in $(secs "$ms") (ctr run to exit, accel $ACCEL)"
	else
		info "${RED}FAILED${RESET}: exit status $rc after $(secs "$ms"); expected '$marker' in the output"
		info "the end of containerd's log:"
		tail -n 15 "$PC_LOG" | sed 's/^/      /'
		FAILED=1
	fi
}

run_guest "Running the unikernel (the test kernel, unikernelType unikraft)" "$IMG_UK" \
	"URUNC-TESTKERNEL-BOOTED"
info "urunc wrote the kernel command line in Unikraft's syntax: the container's environment"
info "as env.vars=[ ... ], then '--' and the image's cmdline (the container has no args)"

if [[ $ACCEL == tcg ]]; then
	info "the Linux guest boots under TCG (software emulation): expect a few seconds"
fi
run_guest "Running the Linux guest (Debian kernel + busybox initrd, unikernelType linux)" "$IMG_LX" \
	"args: hello from a VM"
info "the image's Cmd ran as the guest's application, with its arguments and environment"

step "Running a web server VM with a network (ctr run --cni)"
# A private CNI network: Debian's bridge + host-local plugins, a conflist under a unique
# name sorted first (ctr reads /etc/cni/net.d, plugins from /opt/cni/bin), a private
# address range and IPAM directory; all removed afterwards.
CNI_NAME=urunc-demo-$$
CNI_CONF=/etc/cni/net.d/00-$CNI_NAME.conflist
CNI_BRIDGE=urdemo$(($$ % 100000))
CNI_SUBNET=10.252.$(($$ % 250 + 1))
FORWARD_WAS=$(cat /proc/sys/net/ipv4/ip_forward)
CNI_DIR_CREATED=''
[[ -d /etc/cni/net.d ]] || CNI_DIR_CREATED=1
mkdir -p /etc/cni/net.d
CNI_BIN_LINK=''
if [[ ! -e /opt/cni/bin ]]; then
	mkdir -p /opt/cni
	ln -s /usr/lib/cni /opt/cni/bin
	CNI_BIN_LINK=1
fi
printf '%s\n' "{\"cniVersion\": \"1.0.0\", \"name\": \"$CNI_NAME\", \"plugins\": [{" \
	"  \"type\": \"bridge\", \"bridge\": \"$CNI_BRIDGE\", \"isGateway\": true, \"ipMasq\": false," \
	"  \"ipam\": {\"type\": \"host-local\", \"ranges\": [[{\"subnet\": \"$CNI_SUBNET.0/24\"}]]," \
	"           \"routes\": [{\"dst\": \"0.0.0.0/0\"}], \"dataDir\": \"$WORK/cni-ipam\"}}]}" >"$CNI_CONF"
cni_cleanup() {
	rm -f "$CNI_CONF"
	if [[ -n $CNI_BIN_LINK ]]; then
		rm -f /opt/cni/bin
		rmdir /opt/cni 2>/dev/null || true
	fi
	if [[ -n $CNI_DIR_CREATED ]]; then rmdir /etc/cni/net.d /etc/cni 2>/dev/null || true; fi
	ip link del "$CNI_BRIDGE" 2>/dev/null || true
	echo "$FORWARD_WAS" >/proc/sys/net/ipv4/ip_forward
}
WEB_ID=demo-web-$$
info "ctr run --rm --cni --runtime io.containerd.runc.v2 --runc-binary $URUNC $IMG_WEB $WEB_ID"
info "${DIM}(urunc redirects the container's eth0 traffic to a tap; the guest takes eth0's IP and MAC)${RESET}"
t=$(pc_ms)
pc_ctr run --rm --cni --fifo-dir "$PC_DIR/fifo" --runtime io.containerd.runc.v2 \
	--runc-binary "$URUNC" "$IMG_WEB" "$WEB_ID" </dev/null >"$WORK/web.out" 2>&1 &
WEB_CTR=$!
NETJSON=/run/containerd/runc/$NS/$WEB_ID/network.json
for _ in $(seq 600); do
	[[ -s $NETJSON ]] && break
	kill -0 "$WEB_CTR" 2>/dev/null || break
	sleep 0.1
done
WEB_IP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' "$NETJSON" 2>/dev/null || true)
REPLY=''
if [[ -n $WEB_IP ]]; then
	info "the guest has $WEB_IP; asking it for / (busybox httpd in the VM)"
	for _ in $(seq 240); do
		REPLY=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen("http://" + sys.argv[1] + "/", timeout=2).read().decode().strip())' "$WEB_IP" 2>/dev/null || true)
		[[ -n $REPLY ]] && break
		sleep 0.25
	done
fi
ms=$(($(pc_ms) - t))
pc_ctr task kill -s KILL "$WEB_ID" >/dev/null 2>&1 || true
wait "$WEB_CTR" 2>/dev/null || true
cni_cleanup
if [[ $REPLY == *"Hello from a urunc VM"* ]]; then
	info "HTTP reply: $REPLY"
	info "${GREEN}ok${RESET}: first reply $(secs "$ms") after ctr run (accel $ACCEL); the VM was then killed"
else
	info "${RED}FAILED${RESET}: no HTTP reply from the guest (ip '${WEB_IP}') after $(secs "$ms")"
	sed 's/^/      | /' "$WORK/web.out" | tail -n 20
	FAILED=1
fi

((FAILED == 0)) || die "a guest did not run as expected"
