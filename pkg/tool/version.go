package tool

import (
	"runtime/debug"
	"sync"
)

// Version is the module version the binary was built from ("devel" for a local build, with the
// VCS revision when known), read from the build info as shfmt does: no ldflags to forget. It is
// one word, for the User-Agent; --version prints VersionLine.
var Version = sync.OnceValue(func() string {
	v, _ := versions(debug.ReadBuildInfo())
	return v
})

// VersionLine is what --version prints: the module version, then the VCS revision and time the
// binary was built from, and whether the tree had uncommitted changes.
var VersionLine = sync.OnceValue(func() string {
	_, l := versions(debug.ReadBuildInfo())
	return l
})

func versions(bi *debug.BuildInfo, ok bool) (short, line string) {
	if !ok {
		return "devel", "devel (no build information)"
	}
	var rev, at, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	short = bi.Main.Version
	if short == "" || short == "(devel)" {
		short = "devel"
		if rev != "" {
			short += "+" + rev
		}
	}
	line = short
	if rev != "" {
		line += " (revision " + rev
		if at != "" {
			line += " of " + at
		}
		if modified == "true" {
			line += ", with uncommitted changes"
		}
		line += ")"
	}
	if bi.GoVersion != "" {
		line += ", " + bi.GoVersion
	}
	return short, line
}
