package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/gitops/git"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/reconcile"
)

type certsOptions struct {
	IO       *IO
	File     string
	Dir      string
	JSON     bool
	NoCommit bool
	CA       string
	Phase    string
	Rolled   bool
	Cloud    cloudFlags
	Tailnet  tailnetFlags
}

func newCertsCmd(io *IO) *cobra.Command {
	opts := &certsOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "The Kubernetes certificates: status, plan, apply, CA rotation",
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show every certificate in the tree: subject, SANs, usages, issuer, expiry, chain, status",
		Long: `Status reads a certificate tree in the K8Nix certToolkit layout (ca/, derived/<host>/,
secrets.nix) — any such tree, even without nest.yaml — and shows for every
certificate its subject, SANs, usages, issuer, expiry, days left, whether its
chain verifies, and a status: ok, renew, expired, reissue, drift or missing.
With nest.yaml, drift and missing certificates are judged against the set the
roles call for. Exit 1 when a file cannot be read.`,
		Args: cobra.NoArgs,
		Example: `  nestbot certs status
  nestbot certs status --dir infra/nix/secrets/certs --json`,
		RunE: func(*cobra.Command, []string) error { return runCertsStatus(opts) },
	}
	status.Flags().StringVar(&opts.Dir, "dir", "", "the certificate tree (default: pki.dir of nest.yaml)")
	status.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")

	plan := &cobra.Command{
		Use:   "plan",
		Short: "Show what certs apply would issue, renew, reissue or rekey",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return runCertsPlan(opts) },
	}
	apply := &cobra.Command{
		Use:   "apply",
		Short: "Issue, renew, reissue and rekey certificates, and commit them",
		Long: `Apply brings the certificate tree in line with the roles: it issues what is
missing, renews what is due, reissues what drifted, re-encrypts keys whose
recipients changed, and rewrites secrets.nix — nothing is written unless every
certificate succeeded — then commits the changed files as one commit on the
checked-out branch (unless --no-commit). Signing with an existing CA needs the
bot's identity in NEST_AGE_IDENTITY (or a file named by NEST_AGE_IDENTITY_FILE).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runCertsApply(opts) },
	}
	apply.Flags().BoolVar(&opts.NoCommit, "no-commit", false, "write the files, do not commit them")
	rotate := &cobra.Command{
		Use:   "rotate-ca",
		Short: "Rotate a CA in three phases, so every chain keeps verifying",
		Long: `A CA is rotated in three phases, each its own apply and commit:

  publish  a new CA key; every host's trust bundle holds the old and the new CA
  reissue  every leaf is signed by the new CA (after every host rolled "publish": --rolled)
  drop     the bundle holds only the new CA; the old key is deleted (after a roll: --rolled)

Without --phase it shows where each rotation stands.`,
		Args: cobra.NoArgs,
		Example: `  nestbot certs rotate-ca
  nestbot certs rotate-ca --ca etcd-ca --phase publish
  nestbot certs rotate-ca --ca etcd-ca --phase reissue --rolled`,
		RunE: func(*cobra.Command, []string) error { return runRotateCA(opts) },
	}
	rotate.Flags().StringVar(&opts.CA, "ca", "", "the CA: ca, etcd-ca or front-proxy-ca")
	rotate.Flags().StringVar(&opts.Phase, "phase", "", "publish, reissue or drop")
	rotate.Flags().BoolVar(&opts.Rolled, "rolled", false, "every host has rolled the previous phase's commit")
	rotate.Flags().BoolVar(&opts.NoCommit, "no-commit", false, "write the files, do not commit them")
	for _, c := range []*cobra.Command{status, plan, apply, rotate} {
		c.Flags().StringVarP(&opts.File, "file", "f", "nest.yaml", "the desired state")
	}
	for _, c := range []*cobra.Command{plan, apply, rotate} {
		c.Flags().StringVar(&opts.Cloud.Endpoint, "aws-endpoint", "", "EC2 endpoint URL (default: the SDK's, or AWS_ENDPOINT_URL)")
		opts.Tailnet.register(c)
	}
	cmd.AddCommand(status, plan, apply, rotate)
	return cmd
}

func runCertsStatus(opts *certsOptions) error {
	dir := opts.Dir
	var specs []pki.Spec
	renewBefore := nest.DefaultRenewBefore
	if _, err := os.Stat(opts.File); err == nil || dir == "" {
		d, err := loadDesired(opts.File)
		if err != nil {
			return err
		}
		if d.Fleet.PKI == nil {
			return fmt.Errorf("%s has no pki section: pass --dir", opts.File)
		}
		if dir == "" {
			dir = d.pkiDir()
		}
		specs = pki.Set(d.Fleet, d.HostKeys, nil)
		renewBefore = d.Fleet.PKI.RenewBefore.Duration
	}
	now := time.Now()
	obs, obsErr := pki.Observe(dir, now)
	if obs == nil && obsErr != nil {
		return obsErr
	}
	rows := pki.StatusRows(obs, specs, now, renewBefore)
	var err error
	if opts.JSON {
		err = pki.WriteStatusJSON(opts.IO.Out, rows)
	} else {
		err = pki.WriteStatusTable(opts.IO.Out, rows)
	}
	if err != nil {
		return err
	}
	return obsErr
}

func runCertsPlan(opts *certsOptions) error {
	d, s, err := certsSession(opts)
	if err != nil {
		return err
	}
	defer s.Close()
	plan, err := reconcile.Diff(reconcile.Desired{Fleet: d.Fleet, HostKeys: d.HostKeys}, s.Live, reconcile.Options{})
	if err != nil {
		return fmt.Errorf("plan %s:\n%w", d.Fleet.Name, indentErr(err))
	}
	plan.Steps = plan.StepsOf(reconcile.PlanePKI)
	plan.Notes = nil
	out, err := render(opts.IO, plan, "text", true)
	if err != nil {
		return err
	}
	_, err = opts.IO.Out.Write(out.Bytes())
	return err
}

func runCertsApply(opts *certsOptions) error {
	d, s, err := certsSession(opts)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx := context.Background()
	rep, err := applyCerts(ctx, d, s, opts.IO.Getenv)
	if err != nil {
		return err
	}
	_, err = reportCerts(ctx, opts.IO, d, rep, opts.NoCommit)
	return err
}

func runRotateCA(opts *certsOptions) error {
	d, err := loadDesired(opts.File)
	if err != nil {
		return err
	}
	if d.Fleet.PKI == nil {
		return fmt.Errorf("%s has no pki section", opts.File)
	}
	if opts.Phase == "" {
		rots, err := pki.RotationStatus(os.DirFS(d.pkiDir()))
		if err != nil {
			return err
		}
		if len(rots) == 0 {
			fmt.Fprintln(opts.IO.Out, "No CA rotation in progress.")
		}
		for _, r := range rots {
			fmt.Fprintln(opts.IO.Out, r.String())
		}
		return nil
	}
	if opts.CA == "" {
		return errors.New("--phase needs --ca: ca, etcd-ca or front-proxy-ca")
	}
	phase, err := pki.ParseRotationPhase(opts.Phase)
	if err != nil {
		return err
	}
	a, err := certsApplier(d, opts.IO.Getenv)
	if err != nil {
		return err
	}
	ctx := context.Background()
	rep, err := a.RotateCA(ctx, pki.Set(d.Fleet, d.HostKeys, nil), opts.CA, phase, opts.Rolled)
	if err != nil {
		return err
	}
	_, err = reportCerts(ctx, opts.IO, d, rep, opts.NoCommit)
	return err
}

// certsSession observes what certificate SANs depend on: the cloud, the
// tailnet, and the tree itself.
func certsSession(opts *certsOptions) (desired, *session, error) {
	d, err := loadDesired(opts.File)
	if err != nil {
		return d, nil, err
	}
	if d.Fleet.PKI == nil {
		return d, nil, fmt.Errorf("%s has no pki section", opts.File)
	}
	s, err := observeLive(context.Background(), d, opts.Cloud, opts.Tailnet, opts.IO.Getenv)
	return d, s, err
}

// reportCerts prints what an apply did and commits the files it changed,
// returning the new commit ("" when nothing was committed).
func reportCerts(ctx context.Context, io *IO, d desired, rep *pki.Report, noCommit bool) (string, error) {
	fmt.Fprintln(io.Out, strings.TrimSpace(rep.CommitMessage()))
	for _, w := range rep.Warnings {
		fmt.Fprintln(io.Err, "warning:", w)
	}
	changed := append(append([]string{}, rep.Written...), rep.Removed...)
	if len(changed) == 0 {
		fmt.Fprintln(io.Out, "Nothing to commit: every certificate is current.")
		return "", nil
	}
	if noCommit {
		fmt.Fprintf(io.Out, "%d files written under %s, not committed (--no-commit).\n", len(changed), d.Fleet.PKI.Dir)
		return "", nil
	}
	sha, err := commitCerts(ctx, d, changed, rep.CommitMessage(), io.Getenv)
	switch {
	case errors.Is(err, errNotARepo):
		fmt.Fprintf(io.Out, "%d files written under %s; not a git checkout, so nothing was committed.\n", len(changed), d.Fleet.PKI.Dir)
		return "", nil
	case err != nil:
		return "", fmt.Errorf("the files are written under %s, but the commit failed: %w", d.Fleet.PKI.Dir, err)
	}
	fmt.Fprintf(io.Out, "Committed %d files as %s.\n", len(changed), sha[:12])
	return sha, nil
}

var errNotARepo = errors.New("not a git checkout")

// commitCerts commits the changed files (relative to pki.dir) on the branch
// checked out where nest.yaml is.
func commitCerts(ctx context.Context, d desired, changed []string, message string, getenv func(string) string) (string, error) {
	repo, err := git.Open(d.Root, git.Options{})
	if err != nil {
		return "", errNotARepo
	}
	abs := make([]string, len(changed))
	for i, p := range changed {
		if abs[i], err = filepath.Abs(filepath.Join(d.pkiDir(), filepath.FromSlash(p))); err != nil {
			return "", err
		}
	}
	author := git.Signature{Name: firstNonEmpty(getenv("GIT_AUTHOR_NAME"), "nestbot"), Email: firstNonEmpty(getenv("GIT_AUTHOR_EMAIL"), "nestbot@users.noreply.github.com")}
	return repo.CommitWorktree(ctx, abs, message, author)
}
