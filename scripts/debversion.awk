# Prints the Debian version of a Go binary from its build info, read from
# `go version -m BINARY`: v1.2.0 -> 1.2.0; v1.2.0-rc.1 -> 1.2.0~rc.1; a
# pseudo-version v0.0.0-20261123164639-683e5aa3b1c2 ->
# 0.0.0~20261123164639.683e5aa3b1c2; (devel) -> 0.0.0~devel, with .REVISION
# when the build recorded one; uncommitted changes add +dirty (the go
# command's own suffix) or +modified.
$1 == "mod" { v = $3 }
$1 == "build" && $2 ~ /^vcs\.revision=/ { rev = substr($2, 14, 12) }
$1 == "build" && $2 == "vcs.modified=true" { mod = 1 }
END {
	if (v == "" || v == "(devel)") {
		v = "0.0.0~devel"
		if (rev != "") v = v "." rev
	} else {
		sub(/^v/, "", v)
		sub(/-/, "~", v)
		gsub(/-/, ".", v)
	}
	if (mod && v !~ /\+dirty$/) v = v "+modified"
	print v
}
