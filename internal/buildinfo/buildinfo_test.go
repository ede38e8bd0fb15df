package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func buildInfo(version string, settings ...string) func() (*debug.BuildInfo, bool) {
	return func() (*debug.BuildInfo, bool) {
		bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/ducksnest/nestbot", Version: version}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi, true
	}
}

func TestReleaseStampsWin(t *testing.T) {
	in := read("v1.2.3", "0123456789abcdef0123456789abcdef01234567", "2026-01-02T03:04:05Z",
		buildInfo("v0.0.0-20260101000000-ffffffffffff", "vcs.revision", "ffffffffffffffffffffffffffffffffffffffff", "vcs.time", "2025-01-01T00:00:00Z"))
	if in.Version != "v1.2.3" || in.Commit != "0123456789abcdef0123456789abcdef01234567" || in.Date != "2026-01-02T03:04:05Z" || in.GoVersion != "go1.26.8" {
		t.Fatalf("%+v", in)
	}
}

func TestFromSourceReadsWhatGoRecorded(t *testing.T) {
	in := read("", "", "", buildInfo("v0.0.0-20261207164233-ddb7647f4783+dirty",
		"vcs.revision", "ddb7647f4783752ec31f4ad6356630a442ce4eb0", "vcs.time", "2026-12-07T16:42:33Z", "vcs.modified", "true"))
	want := Info{Version: "v0.0.0-20261207164233-ddb7647f4783+dirty", Commit: "ddb7647f4783752ec31f4ad6356630a442ce4eb0",
		Date: "2026-12-07T16:42:33Z", Modified: true, GoVersion: "go1.26.8", Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if in != want {
		t.Fatalf("got %+v\nwant %+v", in, want)
	}
	if s := in.String(); !strings.Contains(s, "commit ddb7647f4783 with local changes") {
		t.Errorf("String() = %q", s)
	}
}

// TestNeverABareDevel: a build Go recorded nothing about (-buildvcs=false,
// no module version) still says it is a development build and what built it.
func TestNeverABareDevel(t *testing.T) {
	for name, rbi := range map[string]func() (*debug.BuildInfo, bool){
		"(devel) module": buildInfo("(devel)"),
		"no build info":  func() (*debug.BuildInfo, bool) { return nil, false },
	} {
		in := read("", "", "", rbi)
		if in.Version != "devel" || in.GoVersion == "" || in.Platform == "" {
			t.Errorf("%s: %+v", name, in)
		}
		if s := in.String(); s != "devel (commit unknown, "+in.GoVersion+" "+in.Platform+")" {
			t.Errorf("%s: String() = %q", name, s)
		}
	}
}
