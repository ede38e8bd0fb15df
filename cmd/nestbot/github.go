package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/gitops/bot"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/store"
)

// githubFlags are the flags of the verbs that talk to GitHub: serve,
// action, drift.
type githubFlags struct {
	APIURL     string
	Token      string
	AppID      string
	AppKeyFile string
	Login      string
	File       string
	WorkDir    string
	Cloud      cloudFlags
	Tailnet    tailnetFlags
	Shared     sharedFlags
}

func (g *githubFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&g.APIURL, "github-api-url", "", "GitHub's API (default GITHUB_API_URL, else https://api.github.com)")
	f.StringVar(&g.Token, "github-token", "", "a token for GitHub (default GITHUB_TOKEN); or a GitHub App:")
	f.StringVar(&g.AppID, "github-app-id", "", "the GitHub App's id")
	f.StringVar(&g.AppKeyFile, "github-app-key-file", "", "the GitHub App's private key, a PEM file (also NESTBOT_GITHUB_APP_KEY)")
	f.StringVar(&g.Login, "github-login", "", "the bot's login, whose comments hold the plan (default: derived: the App's <slug>[bot], the token's user, or github-actions[bot])")
	f.StringVarP(&g.File, "file", "f", "nest.yaml", "nest.yaml's path in the repository")
	f.StringVar(&g.WorkDir, "work-dir", "", "where checkouts go (default <state dir>/work)")
	f.StringVar(&g.Cloud.Endpoint, "aws-endpoint", "", "EC2 endpoint URL (default: the SDK's, or AWS_ENDPOINT_URL)")
	g.Tailnet.register(cmd)
	g.Shared.register(cmd)
}

// client builds the GitHub client: a GitHub App when an app id is given,
// else a token.
func (g *githubFlags) client(io *IO, observe func(method, route string, status, remaining int)) (*nestgh.Client, error) {
	opts := nestgh.Options{BaseURL: cmp.Or(g.APIURL, io.Getenv("GITHUB_API_URL")), Login: g.Login,
		Logger: io.Logger(), Observe: observe}
	if g.AppID != "" {
		id, err := strconv.ParseInt(g.AppID, 10, 64)
		if err != nil || id <= 0 {
			return nil, fmt.Errorf("--github-app-id %q: the App's id is a positive number, on its settings page", g.AppID)
		}
		key := []byte(io.Getenv("NESTBOT_GITHUB_APP_KEY"))
		if g.AppKeyFile != "" {
			if key, err = os.ReadFile(g.AppKeyFile); err != nil {
				return nil, fmt.Errorf("--github-app-key-file: %w", err)
			}
		}
		opts.AppID, opts.PrivateKey = id, key
	} else {
		opts.Token = cmp.Or(g.Token, io.Getenv("GITHUB_TOKEN"))
		if opts.Token == "" {
			if file := io.Getenv("GITHUB_TOKEN_FILE"); file != "" {
				tok, err := nest.ReadSecretFile(file)
				if err != nil {
					return nil, fmt.Errorf("GITHUB_TOKEN_FILE: %w", err)
				}
				opts.Token = tok
			}
		}
	}
	c, err := nestgh.New(opts)
	if err != nil {
		return nil, errors.New(err.Error() + " (--github-token, or --github-app-id with --github-app-key-file)")
	}
	return c, nil
}

// botConfig is the bot's configuration from the flags, with st holding
// the fleet lock and saved plans.
func (g *githubFlags) botConfig(io *IO, gh *nestgh.Client, st *stores) bot.Config {
	fo := fleetOptions(io, g.Cloud, g.Tailnet)
	fo.DB = st.DB
	return bot.Config{
		GitHub:    gh,
		File:      g.File,
		WorkDir:   cmp.Or(g.WorkDir, filepath.Join(g.Tailnet.options().StateDirOr(io.Getenv), "work")),
		Fleet:     fo,
		Locker:    st.Locker,
		Artifacts: st.Artifacts,
		Logger:    io.Logger(),
	}
}

// openState opens the state file in the state directory, and the shared
// stores the flags name. close closes what was opened.
func (g *githubFlags) openState(ctx context.Context, io *IO) (st *stores, close func(), err error) {
	db, err := store.Open(filepath.Join(g.Tailnet.options().StateDirOr(io.Getenv), "nestbot.db"))
	if err != nil {
		return nil, nil, err
	}
	if st, err = g.Shared.open(ctx, db); err != nil {
		db.Close()
		return nil, nil, err
	}
	return st, func() { db.Close() }, nil
}
