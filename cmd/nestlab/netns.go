package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/ducksnest/nestbot/lab/host"
)

// netnsEnv marks a nestlab that runs in the network namespace it made.
const netnsEnv = "NESTLAB_OWN_NETNS"

// inOwnNetns runs this command again, with the same arguments, in a
// network namespace of its own that has only lo, and returns its exit
// code; ok is false when this process is that run already (then it brings
// lo up and carries on). So what the demo starts in this process —
// nestbot's tsnet node binds its WireGuard and peer-API sockets on every
// interface — listens nowhere but in that namespace.
func inOwnNetns(io *IO) (code int, ok bool, err error) {
	if err := host.NeedRoot(); err != nil {
		return 0, true, fmt.Errorf("nestlab: %w", err)
	}
	if os.Getenv(netnsEnv) == "1" {
		return 0, false, host.LoopbackUp()
	}
	self, err := os.Executable()
	if err != nil {
		return 0, true, err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, io.Out, io.Err
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, true, nil
	case errors.As(err, &ee):
		return ee.ExitCode(), true, nil
	default:
		return 0, true, fmt.Errorf("nestlab: run in a network namespace of its own: %w", err)
	}
}
