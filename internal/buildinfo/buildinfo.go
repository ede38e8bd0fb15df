// Package buildinfo says which nestbot this is: the version, commit and
// build date a release stamps into the binary, or, for a binary built
// from source, what the Go toolchain recorded (debug.ReadBuildInfo).
package buildinfo

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at release build time:
//
//	-ldflags "-X github.com/ducksnest/nestbot/internal/buildinfo.version=v1.2.3
//	          -X github.com/ducksnest/nestbot/internal/buildinfo.commit=<sha>
//	          -X github.com/ducksnest/nestbot/internal/buildinfo.date=<RFC 3339>"
//
// They are strings the linker writes, never assigned at run time.
var version, commit, date string

// Info is one binary's build.
type Info struct {
	Version   string `json:"version"`          // v1.2.3, a module pseudo-version, or "devel"
	Commit    string `json:"commit,omitempty"` // the source's git commit, when known
	Date      string `json:"date,omitempty"`   // the commit's or the build's time (RFC 3339), when known
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go"`
	Platform  string `json:"platform"` // GOOS/GOARCH
}

// Read returns this binary's build information: the release's stamps
// where the linker set them, the module version and VCS stamps Go
// recorded otherwise.
func Read() Info {
	return read(version, commit, date, debug.ReadBuildInfo)
}

func read(version, commit, date string, readBuildInfo func() (*debug.BuildInfo, bool)) Info {
	in := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := readBuildInfo(); ok {
		if in.Version == "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version // go install …@v1.2.3, or a VCS-stamped pseudo-version
		}
		in.GoVersion = cmp.Or(bi.GoVersion, in.GoVersion)
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Commit = cmp.Or(in.Commit, s.Value)
			case "vcs.time":
				in.Date = cmp.Or(in.Date, s.Value)
			case "vcs.modified":
				in.Modified = in.Modified || s.Value == "true"
			}
		}
	}
	in.Version = cmp.Or(in.Version, "devel")
	return in
}

// String is the one-line form: "v1.2.3 (commit 0123abc, 2026-01-02T03:04:05Z, go1.26.8 linux/amd64)".
func (in Info) String() string {
	var parts []string
	if in.Commit != "" {
		c := "commit " + short(in.Commit)
		if in.Modified {
			c += " with local changes"
		}
		parts = append(parts, c)
	} else {
		parts = append(parts, "commit unknown")
	}
	if in.Date != "" {
		parts = append(parts, in.Date)
	}
	parts = append(parts, in.GoVersion+" "+in.Platform)
	return fmt.Sprintf("%s (%s)", in.Version, strings.Join(parts, ", "))
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
