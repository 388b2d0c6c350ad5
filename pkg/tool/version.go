package tool

import (
	"runtime/debug"
	"sync"
)

// Version is the module version the binary was built from ("devel" for a local build, with the
// VCS revision when known), read from the build info as shfmt does: no ldflags to forget.
var Version = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel+" + s.Value[:12]
		}
	}
	return "devel"
})
