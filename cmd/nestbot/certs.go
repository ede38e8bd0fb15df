package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/gitops/fleet"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/pki/certtree"
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
		Example: `  nestbot certs status
  nestbot certs plan && nestbot certs apply
  nestbot certs rotate-ca --ca etcd-ca --phase publish`,
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show every certificate in the tree: subject, SANs, usages, days left, chain, status",
		Long: `Status reads a certificate tree in the K8Nix certToolkit layout (ca/, derived/<host>/,
secrets.nix) — any such tree, even without nest.yaml — and shows for every
certificate its subject, SANs, usages, issuer, expiry, days left, whether its
chain verifies, and a status: ok, renew, expired, reissue, drift or missing.
With nest.yaml, drift and missing certificates are judged against the set the
roles call for, the tree adopted; without it, against what the tree's layout
(kubeadm or K8Nix) fixes for each file's place (subject, usages, that a host's
certificates name the host).
The table shows the first SANs and the days left; --json shows every field.
Exit 1 when DIR is not a certificate tree or a file cannot be read.`,
		Args: cobra.NoArgs,
		Example: `  nestbot certs status
  nestbot certs status --dir infra/nix/secrets/certs --json`,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCertsStatus(cmd.Context(), opts) },
	}
	status.Flags().StringVar(&opts.Dir, "dir", "", "the certificate tree (default: pki.dir of nest.yaml)")
	status.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")

	plan := &cobra.Command{
		Use:   "plan",
		Short: "Show what certs apply would issue, renew, reissue or rekey",
		Example: `  nestbot certs plan
  nestbot certs plan -f examples/ducksnest/nest.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCertsPlan(cmd.Context(), opts) },
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
		Example: `  NEST_AGE_IDENTITY_FILE=~/.config/nestbot/age.key nestbot certs apply
  nestbot certs apply --no-commit && git diff --stat`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCertsApply(cmd.Context(), opts) },
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
		RunE: func(cmd *cobra.Command, _ []string) error { return runRotateCA(cmd.Context(), opts) },
	}
	rotate.Flags().StringVar(&opts.CA, "ca", "", "the CA: ca, etcd-ca or front-proxy-ca (kubeadm layout), k8s (k8nix)")
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

func runCertsStatus(ctx context.Context, opts *certsOptions) error {
	dir := opts.Dir
	var d *fleet.Desired
	renewBefore := nest.DefaultRenewBefore
	_, statErr := os.Stat(opts.File)
	if statErr == nil || dir == "" {
		var err error
		d, err = loadDesired(opts.File)
		if err != nil {
			if errors.Is(statErr, fs.ErrNotExist) {
				return fmt.Errorf("%w, or read a certificate tree without nest.yaml with --dir DIR", err)
			}
			return err
		}
		if d.Fleet.PKI == nil {
			return fmt.Errorf("%s has no pki section: pass --dir", opts.File)
		}
		if dir == "" {
			dir = d.PKIDir()
		}
		renewBefore = d.Fleet.PKI.RenewBefore.Duration
	}
	if opts.Dir != "" {
		if err := certtree.CheckTree(opts.Dir); err != nil {
			return err
		}
	}
	now := time.Now()
	obs, obsErr := certtree.Observe(dir, now)
	if obs == nil && obsErr != nil {
		if opts.Dir != "" || !errors.Is(obsErr, fs.ErrNotExist) {
			return obsErr
		}
		// pki.dir does not exist yet: every certificate nest.yaml declares is missing.
		obs, obsErr = map[string]pki.ObservedCert{}, nil
	}
	var specs []pki.Spec
	if d != nil { // judged against nest.yaml's set, with the tree adopted as plans adopt it
		desire, err := pki.Desired(d.Fleet, d.HostKeys, nil, obs)
		if err != nil {
			return err
		}
		specs = desire.Specs
		if specs == nil {
			specs = []pki.Spec{}
		}
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

func runCertsPlan(ctx context.Context, opts *certsOptions) error {
	_, s, err := certsSession(ctx, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	plan, err := s.Plan("")
	if err != nil {
		return err
	}
	plan.Steps = plan.StepsOf(reconcile.PlanePKI)
	var notes []string // the certificates' only
	for _, n := range plan.Notes {
		if strings.HasPrefix(n, reconcile.PKINotePrefix) {
			notes = append(notes, n)
		}
	}
	plan.Notes = notes
	out, err := render(opts.IO, plan, "text", true)
	if err != nil {
		return err
	}
	_, err = opts.IO.Out.Write(out.Bytes())
	return err
}

func runCertsApply(ctx context.Context, opts *certsOptions) error {
	d, s, err := certsSession(ctx, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	rep, err := s.ApplyCerts(ctx)
	if err != nil {
		return err
	}
	_, err = d.CommitCerts(ctx, rep, fleet.CommitOptions{NoCommit: opts.NoCommit, Out: opts.IO.Out, Getenv: opts.IO.Getenv})
	return err
}

func runRotateCA(ctx context.Context, opts *certsOptions) error {
	d, err := loadDesired(opts.File)
	if err != nil {
		return err
	}
	if d.Fleet.PKI == nil {
		return fmt.Errorf("%s has no pki section", opts.File)
	}
	if opts.Phase == "" {
		rots, err := certtree.RotationStatus(os.DirFS(d.PKIDir()))
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
		return errors.New("--phase needs --ca: ca, etcd-ca or front-proxy-ca (kubeadm layout), k8s (k8nix)")
	}
	phase, err := pki.ParseRotationPhase(opts.Phase)
	if err != nil {
		return err
	}
	a, err := d.CertsApplier(opts.IO.Getenv, opts.IO.Logger())
	if err != nil {
		return err
	}
	// The set as plans see it: the tree's CA adopted as it is.
	obs, err := certtree.Observe(d.PKIDir(), time.Now())
	if err != nil {
		return err
	}
	desire, err := pki.Desired(d.Fleet, d.HostKeys, nil, obs)
	if err != nil {
		return err
	}
	rep, err := a.RotateCA(ctx, desire.Specs, opts.CA, phase, opts.Rolled)
	if err != nil {
		return err
	}
	_, err = d.CommitCerts(ctx, rep, fleet.CommitOptions{NoCommit: opts.NoCommit, Out: opts.IO.Out, Getenv: opts.IO.Getenv})
	return err
}

// certsSession observes what certificate SANs depend on: the cloud, the
// tailnet, and the tree itself.
func certsSession(ctx context.Context, opts *certsOptions) (*fleet.Desired, *fleet.Session, error) {
	d, err := loadDesired(opts.File)
	if err != nil {
		return d, nil, err
	}
	if d.Fleet.PKI == nil {
		return d, nil, fmt.Errorf("%s has no pki section", opts.File)
	}
	s, err := fleet.Observe(ctx, d, fleetOptions(opts.IO, opts.Cloud, opts.Tailnet))
	return d, s, err
}
