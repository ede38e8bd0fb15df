package main

import (
	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/gitops/fleet"
)

// tailnetFlags are the flags of the verbs that join the tailnet.
type tailnetFlags struct {
	ControlURL string
	AuthKey    string
	Hostname   string
	StateDir   string
	SecretsDir string
}

func (tf *tailnetFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&tf.ControlURL, "ts-control-url", "", "tailnet coordination server (default: tailnet.control_url, else Tailscale's)")
	f.StringVar(&tf.AuthKey, "ts-authkey", "", "auth key of nestbot's own tailnet node (default: tailnet.auth_key; also NESTBOT_TS_AUTHKEY_FILE)")
	f.StringVar(&tf.Hostname, "ts-hostname", "nestbot", "nestbot's node name on the tailnet")
	f.StringVar(&tf.StateDir, "state-dir", "", "nestbot's state (default $XDG_STATE_HOME/nestbot)")
	f.StringVar(&tf.SecretsDir, "secrets-dir", "", "the only directory a {file: …} secret in nest.yaml may name (none: file: secrets are refused)")
}

// options are the flags as the pipeline takes them.
func (tf *tailnetFlags) options() fleet.TailnetOptions {
	return fleet.TailnetOptions{ControlURL: tf.ControlURL, AuthKey: tf.AuthKey, Hostname: tf.Hostname, StateDir: tf.StateDir}
}

// cloudFlags are the flags of the verbs that reach AWS.
type cloudFlags struct {
	Endpoint string // --aws-endpoint; AWS_ENDPOINT_URL works too, through the SDK
}

// fleetOptions say how to observe the live fleet, from the flags.
func fleetOptions(io *IO, cf cloudFlags, tf tailnetFlags) fleet.Options {
	return fleet.Options{Getenv: io.Getenv, AWSEndpoint: cf.Endpoint, Tailnet: tf.options(), SecretsDir: tf.SecretsDir,
		Logger: io.Logger()}
}
