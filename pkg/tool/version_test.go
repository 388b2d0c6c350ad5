package tool

import (
	"runtime/debug"
	"testing"
)

func TestVersions(t *testing.T) {
	rev := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}}
	tests := []struct {
		bi          *debug.BuildInfo
		ok          bool
		short, line string
	}{
		{nil, false, "devel", "devel (no build information)"},
		{&debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}, Settings: rev},
			true, "v1.2.3", "v1.2.3 (revision 0123456789ab of 2026-12-01T10:00:00Z), go1.26.0"},
		{&debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
			Settings: append(rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"})},
			true, "devel+0123456789ab", "devel+0123456789ab (revision 0123456789ab of 2026-12-01T10:00:00Z, with uncommitted changes), go1.26.0"},
		{&debug.BuildInfo{Main: debug.Module{Version: "v0.9.0"}}, true, "v0.9.0", "v0.9.0"},
	}
	for _, tt := range tests {
		short, line := versions(tt.bi, tt.ok)
		if short != tt.short || line != tt.line {
			t.Errorf("versions(%+v) = %q, %q, want %q, %q", tt.bi, short, line, tt.short, tt.line)
		}
	}
}
