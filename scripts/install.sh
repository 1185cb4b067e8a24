#!/bin/sh
# Builds and installs seqknock and seqknockd, the systemd units, man pages,
# shell completion, and /etc/seqknock (0700) with an example config and
# an empty drop-in directory seqknockd.d.
# Idempotent: running it again replaces what it installed and keeps your
# config and keys.
#
#   scripts/install.sh              install (as root)
#   scripts/install.sh --uninstall  remove what it installed and the table
#
# Environment: DESTDIR (a staging root, default none), PREFIX (/usr/local),
# SYSTEMD_DIR (/etc/systemd/system), CONF_DIR (/etc/seqknock).
set -eu

cd "$(dirname "$0")/.."
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
CONF_DIR=${CONF_DIR:-/etc/seqknock}

UNITS="seqknockd.service seqknockd-sync.service seqknockd-sync.timer seqknock-broker.socket seqknock-broker.service seqknock-gateway.service"
# A drop-in that re-syncs after nftables.service starts or reloads (which
# flushes the ruleset); see the file.
DROPINS="nftables.service.d/seqknock.conf"
FILES="$PREFIX/sbin/seqknockd
$PREFIX/bin/seqknock
$PREFIX/share/man/man8/seqknockd.8
$PREFIX/share/man/man1/seqknock.1
$PREFIX/share/man/man5/seqknockd.toml.5
$PREFIX/share/bash-completion/completions/seqknock
$PREFIX/share/bash-completion/completions/seqknockd
$PREFIX/share/zsh/site-functions/_seqknock
$PREFIX/share/zsh/site-functions/_seqknockd
$CONF_DIR/seqknockd.toml.example"
for u in $UNITS $DROPINS; do FILES="$FILES
$SYSTEMD_DIR/$u"; done

live() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; }

uninstall() {
	if live; then
		systemctl disable --now $UNITS 2>/dev/null || true
	fi
	if [ -z "$DESTDIR" ] && [ -x "$PREFIX/sbin/seqknockd" ]; then
		# Remove the table too: with the config's name when there is one.
		if [ -r "$CONF_DIR/seqknockd.toml" ]; then
			"$PREFIX/sbin/seqknockd" --config "$CONF_DIR/seqknockd.toml" teardown ||
				"$PREFIX/sbin/seqknockd" teardown --table seqknock || true
		else
			"$PREFIX/sbin/seqknockd" teardown --table seqknock || true
		fi
	fi
	echo "$FILES" | while read -r f; do
		rm -f "$DESTDIR$f"
		case "$f" in "$SYSTEMD_DIR"/*.d/*) [ -n "$DESTDIR" ] || rmdir "$(dirname "$f")" 2>/dev/null || true ;; esac
		# Inside a staging root, leave no empty directory behind.
		if [ -n "$DESTDIR" ]; then
			d=$(dirname "$DESTDIR$f")
			while [ "$d" != "$DESTDIR" ] && rmdir "$d" 2>/dev/null; do d=$(dirname "$d"); done
		fi
	done
	rmdir "$DESTDIR$CONF_DIR/seqknockd.d" 2>/dev/null || true
	if [ -d "$DESTDIR$CONF_DIR" ]; then
		if rmdir "$DESTDIR$CONF_DIR" 2>/dev/null; then
			d=$(dirname "$DESTDIR$CONF_DIR")
			while [ -n "$DESTDIR" ] && [ "$d" != "$DESTDIR" ] && rmdir "$d" 2>/dev/null; do d=$(dirname "$d"); done
		else
			echo "kept $CONF_DIR: it holds your config or keys" >&2
		fi
	fi
	if live; then systemctl daemon-reload; fi
	echo "seqknock uninstalled"
}

install_all() {
	command -v go >/dev/null || { echo "install.sh: go is needed to build" >&2; exit 1; }
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	CGO_ENABLED=0 go build -trimpath -buildvcs=auto -tags urfave_cli_no_docs -o "$tmp/seqknockd" ./server/cmd/seqknockd
	CGO_ENABLED=0 go build -trimpath -buildvcs=auto -tags urfave_cli_no_docs -o "$tmp/seqknock" ./client/cmd/seqknock

	install -D -m 0755 "$tmp/seqknockd" "$DESTDIR$PREFIX/sbin/seqknockd"
	install -D -m 0755 "$tmp/seqknock" "$DESTDIR$PREFIX/bin/seqknock"
	install -D -m 0644 man/seqknockd.8 "$DESTDIR$PREFIX/share/man/man8/seqknockd.8"
	install -D -m 0644 man/seqknock.1 "$DESTDIR$PREFIX/share/man/man1/seqknock.1"
	install -D -m 0644 man/seqknockd.toml.5 "$DESTDIR$PREFIX/share/man/man5/seqknockd.toml.5"
	for n in seqknock seqknockd; do
		sed "s/@NAME@/$n/g" scripts/completion/bash.in >"$tmp/$n.bash"
		sed "s/@NAME@/$n/g" scripts/completion/zsh.in >"$tmp/_$n"
		install -D -m 0644 "$tmp/$n.bash" "$DESTDIR$PREFIX/share/bash-completion/completions/$n"
		install -D -m 0644 "$tmp/_$n" "$DESTDIR$PREFIX/share/zsh/site-functions/_$n"
	done
	for u in $UNITS $DROPINS; do
		f="$tmp/$(basename "$u")"
		sed -e "s|/usr/local/sbin/|$PREFIX/sbin/|g" -e "s|/usr/local/bin/|$PREFIX/bin/|g" -e "s|/etc/seqknock/|$CONF_DIR/|g" "scripts/systemd/$u" >"$f"
		install -D -m 0644 "$f" "$DESTDIR$SYSTEMD_DIR/$u"
	done
	install -d -m 0700 "$DESTDIR$CONF_DIR"
	chmod 0700 "$DESTDIR$CONF_DIR"
	install -d -m 0700 "$DESTDIR$CONF_DIR/seqknockd.d"
	install -m 0600 scripts/seqknockd.toml.example "$DESTDIR$CONF_DIR/seqknockd.toml.example"
	# The group of the broker's socket and of the sudoers rule.
	if [ -z "$DESTDIR" ] && ! getent group seqknock >/dev/null; then
		groupadd --system seqknock
	fi
	if live; then systemctl daemon-reload; fi
	cat <<MSG
seqknock installed under ${DESTDIR:-}$PREFIX. Next:
  seqknockd keygen -o $CONF_DIR/alice.key    # one key per user; give it to the user
  cp $CONF_DIR/seqknockd.toml.example $CONF_DIR/seqknockd.toml   # and edit
  seqknockd --config $CONF_DIR/seqknockd.toml check-config
  systemctl enable --now seqknockd.service   # or: seqknockd-sync.service seqknockd-sync.timer
On a client machine, to let the members of group seqknock knock without sudo or setcap:
  systemctl enable --now seqknock-broker.socket; usermod -aG seqknock USER
MSG
}

case "${1:-}" in
--uninstall) uninstall ;;
"") install_all ;;
*)
	echo "usage: scripts/install.sh [--uninstall]" >&2
	exit 2
	;;
esac
