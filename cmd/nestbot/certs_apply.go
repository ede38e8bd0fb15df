package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/reconcile"
)

// identityEnv names the bot's age identity: an age X25519 secret key or an
// OpenSSH ed25519 private key, in the variable or in a file named by
// NEST_AGE_IDENTITY_FILE. It decrypts the CA keys; it stays in memory.
const identityEnv = "NEST_AGE_IDENTITY"

func loadIdentity(getenv func(string) string) (*pki.Identity, error) {
	data := []byte(getenv(identityEnv))
	if len(data) == 0 {
		file := getenv(identityEnv + "_FILE")
		if file == "" {
			return nil, nil
		}
		var err error
		if data, err = os.ReadFile(file); err != nil {
			return nil, fmt.Errorf("%s_FILE: %w", identityEnv, err)
		}
	}
	id, err := pki.ParseIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", identityEnv, err)
	}
	return id, nil
}

// pkiApplier issues, renews, reissues and rekeys the certificate tree in
// the repository, then reports each plan step by what was done to it.
//
// refresh re-observes the live state the certificates' SANs come from: a host
// created by this apply has addresses only now.
func pkiApplier(d desired, refresh func(context.Context) (*reconcile.Live, error), getenv func(string) string, logf func(string, ...any)) (reconcile.PlaneApplier, error) {
	id, err := loadIdentity(getenv)
	if err != nil {
		return nil, err
	}
	a := &pki.Applier{Files: pki.Dir(d.pkiDir()), Identity: id, RenewBefore: d.Fleet.PKI.RenewBefore.Duration,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	rd := reconcile.Desired{Fleet: d.Fleet, HostKeys: d.HostKeys}
	return func(ctx context.Context, steps []reconcile.Step) ([]reconcile.StepResult, error) {
		live, err := refresh(ctx)
		if err != nil {
			return nil, err
		}
		specs := pki.Set(d.Fleet, d.HostKeys, reconcile.HostFacts(rd, live))
		rep, err := a.Apply(ctx, specs)
		out := make([]reconcile.StepResult, 0, len(steps))
		if err != nil {
			for _, st := range steps {
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: "nothing was written"})
			}
			return out, fmt.Errorf("pki: %w", err)
		}
		done := map[string]pki.Result{}
		for _, r := range rep.Results {
			done[reconcile.CertAddress(r.ID)] = r
		}
		for _, st := range steps {
			r, ok := done[st.Address]
			switch {
			case !ok:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: "not in the certificate set"})
			case r.Action == pki.Held:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: r.Reason})
			default:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusApplied, Detail: string(r.Action)})
			}
		}
		for _, w := range rep.Warnings {
			logf("pki: %s", w)
		}
		logf("pki: %s (%d files written under %s)", strings.TrimPrefix(rep.Summary(), "nest: "), len(rep.Written), d.Fleet.PKI.Dir)
		return out, nil
	}, nil
}
