package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

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

// certsApplier is the certificate tree's applier, with the bot's identity.
func certsApplier(d desired, getenv func(string) string) (*pki.Applier, error) {
	id, err := loadIdentity(getenv)
	if err != nil {
		return nil, err
	}
	return &pki.Applier{Files: pki.Dir(d.pkiDir()), Identity: id, RenewBefore: d.Fleet.PKI.RenewBefore.Duration,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}, nil
}

// applyCerts issues, renews, reissues and rekeys the certificate tree in the
// repository. It first observes again the live state the SANs come from (a
// host created by this apply has addresses only now) and pins the host keys
// of hosts that just joined, so their keys are encrypted to them.
func applyCerts(ctx context.Context, d desired, s *session, getenv func(string) string) (*pki.Report, error) {
	a, err := certsApplier(d, getenv)
	if err != nil {
		return nil, err
	}
	live, err := s.refresh(d)(ctx)
	if err != nil {
		return nil, err
	}
	pinned, err := s.learnHostKeys(ctx, d, live)
	if err != nil {
		return nil, err
	}
	rd := reconcile.Desired{Fleet: d.Fleet, HostKeys: d.HostKeys}
	rep, err := a.Apply(ctx, pki.Set(d.Fleet, d.HostKeys, reconcile.HostFacts(rd, live)))
	if err != nil {
		return nil, err
	}
	rep.Written = append(rep.Written, pinned...)
	return rep, nil
}

// pkiApplier applies the certificate plane within nestbot apply, commits it
// (unless noCommit), and reports each plan step by what was done to it.
func pkiApplier(d desired, s *session, io *IO, noCommit bool) reconcile.PlaneApplier {
	return func(ctx context.Context, steps []reconcile.Step) ([]reconcile.StepResult, error) {
		out := make([]reconcile.StepResult, 0, len(steps))
		rep, err := applyCerts(ctx, d, s, io.Getenv)
		if err != nil {
			for _, st := range steps {
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: "nothing was written"})
			}
			return out, err
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
		sha, err := reportCerts(ctx, &IO{Out: io.Err, Err: io.Err, Getenv: io.Getenv}, d, rep, noCommit)
		if sha != "" && s.Repo != nil {
			s.Repo.revision = sha // the rollout ships the commit that holds the certificates
		}
		return out, err
	}
}
