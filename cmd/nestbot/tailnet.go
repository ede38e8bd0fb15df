package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	nesttailnet "github.com/ducksnest/nestbot/reconcile/tailnet"
)

// tailnetFlags are the flags of the verbs that join the tailnet.
type tailnetFlags struct {
	ControlURL string
	AuthKey    string
	Hostname   string
	StateDir   string
}

func (tf *tailnetFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&tf.ControlURL, "ts-control-url", "", "tailnet coordination server (default: tailnet.control_url, else Tailscale's)")
	f.StringVar(&tf.AuthKey, "ts-authkey", "", "auth key of nestbot's own tailnet node (default: tailnet.auth_key; also NESTBOT_TS_AUTHKEY_FILE)")
	f.StringVar(&tf.Hostname, "ts-hostname", "nestbot", "nestbot's node name on the tailnet")
	f.StringVar(&tf.StateDir, "state-dir", "", "nestbot's state (default $XDG_STATE_HOME/nestbot)")
}

// stateDir is --state-dir, or $XDG_STATE_HOME/nestbot, or ~/.local/state/nestbot.
func (tf *tailnetFlags) stateDir(getenv func(string) string) string {
	if tf.StateDir != "" {
		return tf.StateDir
	}
	if x := getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "nestbot")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "nestbot")
	}
	return filepath.Join(home, ".local", "state", "nestbot")
}

// authKey is --ts-authkey (or NESTBOT_TS_AUTHKEY_FILE), else the fleet's tailnet.auth_key.
func (tf *tailnetFlags) authKey(f *nest.Fleet, getenv func(string) string) (string, error) {
	if tf.AuthKey != "" {
		return tf.AuthKey, nil
	}
	if file := getenv("NESTBOT_TS_AUTHKEY_FILE"); file != "" {
		return nest.SecretRef{File: file}.Resolve(getenv)
	}
	if f.Tailnet.AuthKey != nil {
		return f.Tailnet.AuthKey.Resolve(getenv)
	}
	return "", errors.New("no auth key for nestbot's tailnet node: set tailnet.auth_key in nest.yaml or --ts-authkey")
}

// joinTailnet starts nestbot's own ephemeral node. It returns nil, nil when
// there is no way to join (no key): the tailnet plane is then not observed.
func joinTailnet(ctx context.Context, d desired, tf tailnetFlags, getenv func(string) string) (*tsnet.Server, error) {
	key, err := tf.authKey(d.Fleet, getenv)
	if err != nil {
		return nil, nil
	}
	control := firstNonEmpty(tf.ControlURL, d.Fleet.Tailnet.ControlURL)
	dir := filepath.Join(tf.stateDir(getenv), "tsnet", d.Fleet.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := nesttailnet.Join(ctx, nesttailnet.Config{Hostname: tf.Hostname, Dir: dir, InMemory: true, Ephemeral: true,
		AuthKey: key, ControlURL: control})
	if err != nil {
		return nil, fmt.Errorf("join the tailnet: %w", err)
	}
	return s, nil
}

// tailnetApplier carries out the tailnet plane: it waits, bounded by
// tailnet.join_timeout, for each new host to join.
func tailnetApplier(bot *tsnet.Server, f *nest.Fleet, logf func(string, ...any)) reconcile.PlaneApplier {
	return func(ctx context.Context, steps []reconcile.Step) ([]reconcile.StepResult, error) {
		var out []reconcile.StepResult
		var failed error
		for _, st := range steps {
			if failed != nil {
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: "an earlier step failed"})
				continue
			}
			switch st.Action {
			case reconcile.ActionWait:
				name := st.Address[len("tailnet.node."):]
				logf("tailnet: waiting up to %s for %s to join", f.Tailnet.JoinTimeout, name)
				wctx, cancel := context.WithTimeout(ctx, f.Tailnet.JoinTimeout.Duration)
				n, err := nesttailnet.WaitJoined(wctx, bot, name)
				cancel()
				if err != nil {
					failed = fmt.Errorf("%s: %w", st.Address, err)
					out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: err.Error()})
					continue
				}
				ip := ""
				if len(n.IPs) > 0 {
					ip = n.IPs[0].String()
				}
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusApplied, Detail: "joined as " + ip})
			default:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: "removing nodes needs the Tailscale API, not available yet"})
			}
		}
		return out, failed
	}
}
