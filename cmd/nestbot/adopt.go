package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
)

type adoptOptions struct {
	IO             *IO
	File           string
	TerraformState string
	Cloud          cloudFlags
}

func newAdoptCmd(io *IO) *cobra.Command {
	opts := &adoptOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "adopt",
		Short: "Print nest.yaml with adopt: {id: …} for what already exists (in the account, or in a Terraform state)",
		Long: `Adopt finds, for every AWS resource nest.yaml describes, the one that exists
already — by nestbot's tags, by its adopt: block, or by what makes it look the
same: the VPC's and subnets' CIDRs, the Name Terraform configurations give, a
security group's name, an instance's Name (the host's) — and prints nest.yaml
with adopt: {id: …} at each, so that the plan takes them over instead of
creating twins. The rest of the file is kept. Nothing is changed in AWS or on
disk: redirect the output, review it, and plan.

What exists is read from the account's region (the AWS SDK's default
credential chain; AWS_ENDPOINT_URL or --aws-endpoint point it elsewhere), or,
with --terraform-state, from a Terraform state file (format version 4, as
terraform state pull prints it from any backend), without calling AWS.`,
		Args: cobra.NoArgs,
		Example: `  nestbot adopt > nest.adopted.yaml && nestbot plan -f nest.adopted.yaml
  terraform state pull > terraform.tfstate && nestbot adopt --terraform-state terraform.tfstate`,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAdopt(cmd.Context(), opts) },
	}
	f := cmd.Flags()
	f.StringVarP(&opts.File, "file", "f", "nest.yaml", "the desired state")
	f.StringVar(&opts.TerraformState, "terraform-state", "", "read what exists from this Terraform state file instead of the account")
	f.StringVar(&opts.Cloud.Endpoint, "aws-endpoint", "", "EC2 endpoint URL (default: the SDK's, or AWS_ENDPOINT_URL)")
	return cmd
}

func runAdopt(ctx context.Context, opts *adoptOptions) error {
	d, err := loadDesired(opts.File)
	if err != nil {
		return err
	}
	f := d.Fleet
	if f.AWS == nil {
		return fmt.Errorf("%s has no aws: block: there is nothing in AWS to adopt", opts.File)
	}
	live := &reconcile.Live{FormatVersion: reconcile.FormatVersion, Planes: []reconcile.Plane{reconcile.PlaneCloud}}
	from := "the account (" + f.AWS.Region + ")"
	if opts.TerraformState != "" {
		file, err := os.Open(opts.TerraformState)
		if err != nil {
			return fmt.Errorf("--terraform-state: %w", err)
		}
		defer file.Close()
		cloud, read, err := nestaws.CloudFromTerraformState(opts.TerraformState, file)
		if err != nil {
			return err
		}
		live.Cloud = cloud
		from = fmt.Sprintf("%s (Terraform %s, serial %d: %s", opts.TerraformState, read.TerraformVersion, read.Serial, reconcile.Plural(read.Read, "resource"))
		if len(read.Skipped) > 0 {
			from += "; passed over " + strings.Join(read.Skipped, ", ")
		}
		from += ")"
	} else {
		client, err := nestaws.NewClient(ctx, nestaws.ClientOptions{Region: f.AWS.Region, Endpoint: opts.Cloud.Endpoint})
		if err != nil {
			return err
		}
		if live.Cloud, err = (&nestaws.Observer{Client: client}).Observe(ctx, f); err != nil {
			return fmt.Errorf("observe the cloud: %w", err)
		}
	}
	found, ferr := reconcile.Adoptable(reconcile.Desired{Fleet: f, HostKeys: d.HostKeys}, live)
	var adoptions []nest.Adoption
	var report bytes.Buffer
	fmt.Fprintf(&report, "nestbot adopt: what exists, from %s:\n", from)
	for _, x := range found {
		switch {
		case x.Owned:
			// The line keeps the Name it has: without one, nestbot names
			// what it owns its own way.
			fmt.Fprintf(&report, "  %-32s %s is the fleet's already (%s)\n", x.Address, x.ID, x.What)
			adoptions = append(adoptions, nest.Adoption{Path: x.Path, ID: x.ID, Comment: x.What})
		case x.ID != "":
			fmt.Fprintf(&report, "  %-32s adopt %s (%s)\n", x.Address, x.ID, x.What)
			adoptions = append(adoptions, nest.Adoption{Path: x.Path, ID: x.ID, Comment: x.What})
		default:
			fmt.Fprintf(&report, "  %-32s %d look the same, none is adopted: %s; write adopt: {id: …} for the one to take over\n",
				x.Address, len(x.Others), strings.Join(x.Others, "; "))
		}
	}
	if ferr != nil {
		fmt.Fprintf(&report, "  not told:\n    %s\n", strings.ReplaceAll(ferr.Error(), "\n", "\n    "))
	}
	out, err := nest.WithAdoptions(d.Source, adoptions)
	if err != nil {
		return fmt.Errorf("%s: %w", opts.File, err)
	}
	opts.IO.Err.Write(report.Bytes())
	opts.IO.Out.Write(out)
	return nil
}
