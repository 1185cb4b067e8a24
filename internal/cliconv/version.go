package cliconv

import "runtime/debug"

// Version describes this binary's build: the main module's version and, when
// the build recorded one, its VCS revision, e.g.
// "v1.2.0 (revision 0123456789ab)" or
// "v0.0.0-20261123164639-683e5aa3b1c2+dirty (revision 683e5aa3b1c2, modified)".
// A build without module information (go run of a file, or a test binary)
// says "(devel)".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	return versionOf(bi)
}

func versionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return v
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v += " (revision " + rev
	if modified {
		v += ", modified"
	}
	return v + ")"
}
