package host_test

import (
	"context"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/lab/host"
)

func TestDebugSwitch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := labFor(t)
	h := bootHost(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa"})
	for _, c := range [][]string{
		{"su", "-l", "root", "-c", "echo hi"},
		{"systemctl", "--failed", "--no-legend"},
		{"sh", "-c", "systemctl status --no-pager user-runtime-dir@0 user@0 | cat; ls -la /run/user; findmnt | tail; journalctl -b --no-pager -u user@0 -u user-runtime-dir@0 | tail -20"},
	} {
		out, err := h.Run(ctx, c...)
		t.Logf("%v: %v\n%s", c, err, out)
	}
}
