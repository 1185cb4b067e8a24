#!/bin/sh
# Builds the Debian packages seqknock (the client) and seqknockd (the
# server) with nfpm, which scripts/nfpm/go.mod pins (its dependencies stay out
# of the main go.mod; the only network access is the Go module proxy, once).
#
#   scripts/package.sh [OUTDIR]      writes OUTDIR (default dist/)/*.deb
#
# The package version comes from the binaries' build info, as --version
# prints it: v1.2.0 -> 1.2.0, a pseudo-version
# v0.0.0-20261123164639-683e5aa3b1c2 -> 0.0.0~20261123164639.683e5aa3b1c2,
# a build outside a git checkout -> 0.0.0~devel; uncommitted changes add
# +dirty (or +modified).
#
# Environment: GOARCH (default: this machine's), MAINTAINER.
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
arch=${GOARCH:-$(go env GOARCH)}
maintainer=${MAINTAINER:-seqknock maintainers <root@localhost>}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

b="$tmp/build"
mkdir -p "$b/units" "$b/man"
CGO_ENABLED=0 GOARCH=$arch go build -trimpath -buildvcs=auto -tags urfave_cli_no_docs -o "$b/seqknockd" ./server/cmd/seqknockd
CGO_ENABLED=0 GOARCH=$arch go build -trimpath -buildvcs=auto -tags urfave_cli_no_docs -o "$b/seqknock" ./client/cmd/seqknock

# debversion prints the Debian version of a binary's build info.
debversion() { go version -m "$1" | awk -f scripts/debversion.awk; }
version=$(debversion "$b/seqknockd")
if [ "$(debversion "$b/seqknock")" != "$version" ]; then
	echo "package.sh: seqknock and seqknockd built with different versions" >&2
	exit 1
fi

# Every file under scripts/systemd, drop-in directories (NAME.d/) too; the
# client's units (the broker's seqknock-broker.*, seqknock-gateway.service)
# go to the client package.
units=$(cd scripts/systemd && find . -type f | sed 's|^\./||' | grep -v '^seqknock-' | sort)
clientunits=$(cd scripts/systemd && ls seqknock-*)
for u in $units $clientunits; do
	mkdir -p "$b/units/$(dirname "$u")"
	sed -e "s|/usr/local/sbin/|/usr/sbin/|g" -e "s|/usr/local/bin/|/usr/bin/|g" "scripts/systemd/$u" >"$b/units/$u"
done
for p in man/*.[158]; do
	gzip -9n <"$p" >"$b/man/$(basename "$p").gz"
done
for n in seqknock seqknockd; do
	sed "s/@NAME@/$n/g" scripts/completion/bash.in >"$b/$n.bash"
	sed "s/@NAME@/$n/g" scripts/completion/zsh.in >"$b/_$n"
done

# common prints the fields both packages share.
common() {
	cat <<YAML
name: $1
arch: $arch
platform: linux
version: "$version"
version_schema: none
section: net
priority: optional
maintainer: "$maintainer"
license: Apache-2.0
homepage: https://github.com/seqknock/seqknock
YAML
}
# file SRC DST MODE [TYPE] prints one contents entry.
file() {
	cat <<YAML
  - src: $1
    dst: $2
    file_info: {mode: 0$3}
YAML
	if [ -n "${4:-}" ]; then echo "    type: $4"; fi
}

{
	common seqknockd
	cat <<YAML
description: |-
  hides TCP services behind the kernel firewall, with the knock in the SYN
  seqknockd keeps the TCP initial sequence numbers that are valid knocks now
  in an nftables set, so the kernel admits a SYN to a protected port (sshd)
  only when it carries one. There is no extra packet, port or round trip.
  The units are installed disabled: enable seqknockd.service, or
  seqknockd-sync.timer, after writing /etc/seqknock/seqknockd.toml.
scripts:
  postinstall: $root/scripts/debian/seqknockd.postinst
  preremove: $root/scripts/debian/seqknockd.prerm
  postremove: $root/scripts/debian/seqknockd.postrm
contents:
  - dst: /etc/seqknock
    type: dir
    file_info: {mode: 0700}
YAML
	file "$b/seqknockd" /usr/sbin/seqknockd 755
	for u in $units; do file "$b/units/$u" "/usr/lib/systemd/system/$u" 644; done
	file "$b/man/seqknockd.8.gz" /usr/share/man/man8/seqknockd.8.gz 644
	file "$b/man/seqknockd.toml.5.gz" /usr/share/man/man5/seqknockd.toml.5.gz 644
	file "$b/seqknockd.bash" /usr/share/bash-completion/completions/seqknockd 644
	file "$b/_seqknockd" /usr/share/zsh/vendor-completions/_seqknockd 644
	file "$root/LICENSE" /usr/share/doc/seqknockd/copyright 644
	file "$root/README.md" /usr/share/doc/seqknockd/README.md 644
	file "$root/SECURITY.md" /usr/share/doc/seqknockd/SECURITY.md 644
	# The config to edit, and the commented example the docs name: both
	# in /etc, so both are conffiles.
	file "$root/scripts/seqknockd.toml.example" /etc/seqknock/seqknockd.toml 600 config
	file "$root/scripts/seqknockd.toml.example" /etc/seqknock/seqknockd.toml.example 600 config
} >"$tmp/seqknockd.yaml"

{
	common seqknock
	cat <<YAML
description: |-
  opens TCP connections whose SYN carries a seqknock knock
  seqknock derives the TCP initial sequence number a seqknockd server admits
  and puts it on the SYN of its connection; use it as OpenSSH's ProxyCommand.
  Without CAP_NET_ADMIN it asks the broker, seqknock-broker.socket
  (installed disabled): systemctl enable --now seqknock-broker.socket,
  then add the users to group seqknock. Or give the binary the
  capability (setcap cap_net_admin+ep /usr/bin/seqknock), or use sudo.
  seqknock-gateway.service (installed disabled) knocks for the devices
  behind a Linux router: see GATEWAY in seqknock(1).
scripts:
  postinstall: $root/scripts/debian/seqknock.postinst
  postremove: $root/scripts/debian/seqknock.postrm
contents:
YAML
	file "$b/seqknock" /usr/bin/seqknock 755
	for u in $clientunits; do file "$b/units/$u" "/usr/lib/systemd/system/$u" 644; done
	file "$b/man/seqknock.1.gz" /usr/share/man/man1/seqknock.1.gz 644
	file "$b/seqknock.bash" /usr/share/bash-completion/completions/seqknock 644
	file "$b/_seqknock" /usr/share/zsh/vendor-completions/_seqknock 644
	file "$root/LICENSE" /usr/share/doc/seqknock/copyright 644
	file "$root/README.md" /usr/share/doc/seqknock/README.md 644
	file "$root/SECURITY.md" /usr/share/doc/seqknock/SECURITY.md 644
} >"$tmp/seqknock.yaml"

for n in seqknock seqknockd; do
	(cd scripts/nfpm && go tool nfpm package --config "$tmp/$n.yaml" --packager deb \
		--target "$out/${n}_${version}_$arch.deb") >&2
	echo "$out/${n}_${version}_$arch.deb"
done
