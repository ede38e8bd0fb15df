package host_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/lab/tailnet"
)

// labFor starts a tailnet for a test.
func labFor(t *testing.T) *tailnet.Lab {
	t.Helper()
	lab := &tailnet.Lab{Tags: []string{"tag:nest", "tag:nestbot"}}
	if err := lab.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	return lab
}

func bootHost(t *testing.T, ctx context.Context, lab *tailnet.Lab, cfg host.Config) *host.Host {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = filepath.Join(t.TempDir(), cfg.Name)
	}
	if cfg.Tags == nil {
		cfg.Tags = []string{"tag:nest"}
	}
	cfg.Logf = t.Logf
	h, err := host.Boot(ctx, lab, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestBootInstallsAndJoins(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := labFor(t)
	h := bootHost(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa"})
	st, err := h.State()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state %+v", st)
	if st.Revision != "aaaa" || st.Generation != 1 || st.System != st.Booted {
		t.Errorf("state %+v, want revision aaaa on generation 1, booted", st)
	}
	out, err := h.Run(ctx, "systemctl", "show", "sshd", "tailscaled", "-p", "ActiveState", "--value")
	t.Logf("%q %v", out, err)
}
