package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ducksnest/nestbot/lab/tailnet"
)

// startContainer mounts the overlay in a mount namespace of its own and
// starts systemd-nspawn in it, in the host's network namespace.
func (h *Host) startContainer(ctx context.Context) error {
	ports, err := labPorts(h.lab)
	if err != nil {
		return err
	}
	ns, err := newNetns(ports)
	if err != nil {
		return err
	}
	merged := filepath.Join(h.dir, "merged")
	work := filepath.Join(h.dir, "work")
	for _, d := range []string{merged, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			ns.close()
			return err
		}
	}
	nspawn := []string{"systemd-nspawn", "--quiet", "--directory=" + merged, "--register=no", "--keep-unit",
		"--machine=" + h.cfg.HostName, "--network-namespace-path=" + ns.path(),
		"--kill-signal=SIGRTMIN+4", // systemd(1): poweroff.target, a clean stop
		"--bind=" + filepath.Join(h.store, "nix/store") + ":/nix/store",
		"--bind=" + filepath.Join(h.store, "nix/var/nix/db") + ":/nix/var/nix/db",
		"--bind-ro=" + h.tsd + ":/usr/local/bin/tailscaled",
		"--setenv=HOME=/root",
		"/usr/lib/nestlab/boot", h.cfg.Attribute}
	script := fmt.Sprintf("set -e; mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s %s; exec %s",
		shq(h.image), shq(filepath.Join(h.dir, "upper")), shq(work), shq(merged), shjoin(nspawn))
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script)
	console := &syncWriter{w: &bytes.Buffer{}} // one lock for both streams
	cmd.Stdout, cmd.Stderr = console, console
	// Pdeathsig: if the lab's process dies (a killed test), nspawn halts
	// the container rather than leave it running (SIGTERM is nspawn's
	// signal to stop the container with --kill-signal). The signal comes
	// when the thread that forked exits, not the process, and Go retires a
	// thread whenever a goroutine ends locked to it (newNetns's do): so
	// nspawn is started and waited for on a thread locked for as long as
	// it runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	exited := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(exited)
		h.mu.Lock()
		if h.exited == exited {
			h.leader = 0
		}
		h.mu.Unlock()
	}()
	if err := <-started; err != nil {
		ns.close()
		return err
	}
	leader, err := waitLeader(ctx, cmd.Process.Pid, exited)
	if err != nil {
		cmd.Process.Kill()
		<-exited
		ns.close()
		return fmt.Errorf("%w%s", err, tailOf(console))
	}
	h.mu.Lock()
	h.cmd, h.ns, h.leader, h.exited, h.console = cmd, ns, leader, exited, console
	h.mu.Unlock()
	return nil
}

// waitLeader finds the container's PID 1: nspawn's child.
func waitLeader(ctx context.Context, pid int, exited <-chan struct{}) (int, error) {
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				// nspawn's child is PID 1 in the new PID namespace once it
				// has a root of its own.
				if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n)); err == nil && strings.Contains(string(st), "NSpid:\t"+strconv.Itoa(n)+"\t1") {
					return n, nil
				}
			}
		}
		select {
		case <-exited:
			return 0, errors.New("systemd-nspawn exited")
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for the container: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitSystem waits until systemd in the host has booted (running or
// degraded).
func (h *Host) waitSystem(ctx context.Context) error {
	h.mu.Lock()
	exited := h.exited
	h.mu.Unlock()
	for {
		out, _ := h.Run(ctx, "systemctl", "is-system-running", "--wait")
		switch s := strings.TrimSpace(out); s {
		case "running", "degraded":
			return nil
		}
		select {
		case <-exited:
			return errors.New("the container stopped while booting")
		case <-ctx.Done():
			return fmt.Errorf("waiting for systemd: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Run runs a command in the host (nsenter into all its namespaces), as
// root, and returns its combined output.
func (h *Host) Run(ctx context.Context, args ...string) (string, error) {
	h.mu.Lock()
	leader := h.leader
	h.mu.Unlock()
	if leader == 0 {
		return "", fmt.Errorf("host %s is not running", h.cfg.Name)
	}
	nsargs := append([]string{"--target", strconv.Itoa(leader), "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd", "--",
		"/usr/bin/env", "-C", "/root", "-i", "PATH=/run/current-system/sw/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", nsargs...).CombinedOutput()
	return string(out), err
}

// Stop stops the host as `poweroff` would (systemd stops its units), and
// kills what is left after 20 s. Its directory stays: Start boots it again.
func (h *Host) Stop() {
	h.mu.Lock()
	cmd, ns, exited := h.cmd, h.ns, h.exited
	h.cmd, h.ns = nil, nil
	h.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	h.mu.Lock()
	h.leader = 0
	h.mu.Unlock()
	ns.close()
	h.logf("host %s: stopped", h.cfg.Name)
}

// labPorts are the ports of the tailnet's control and DERP servers on
// 127.0.0.1, which the host's namespace forwards.
func labPorts(lab *tailnet.Lab) ([]int, error) {
	var ports []int
	u, err := url.Parse(lab.ControlURL())
	if err != nil || u.Port() == "" {
		return nil, fmt.Errorf("the tailnet's control URL %q has no port", lab.ControlURL())
	}
	p, _ := strconv.Atoi(u.Port())
	ports = append(ports, p)
	for _, r := range lab.DERPMap().Regions {
		for _, n := range r.Nodes {
			ports = append(ports, n.DERPPort)
		}
	}
	return ports, nil
}

func (h *Host) consoleTail() string {
	h.mu.Lock()
	c := h.console
	h.mu.Unlock()
	return tailOf(c)
}

func tailOf(b *syncWriter) string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	s := b.w.String()
	b.mu.Unlock()
	if len(s) > 3000 {
		s = s[len(s)-3000:]
	}
	if strings.TrimSpace(s) == "" {
		return ""
	}
	return "\n--- console:\n" + s
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w.Len() > 1<<20 {
		s.w.Reset()
	}
	return s.w.Write(p)
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func shjoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shq(a)
	}
	return strings.Join(q, " ")
}
