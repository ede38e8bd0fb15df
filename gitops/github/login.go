package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	gogithub "github.com/google/go-github/v93/github"
)

// ActionsLogin is the login of Actions' GITHUB_TOKEN (an installation
// token of the github-actions App).
const ActionsLogin = "github-actions[bot]"

// Login is the bot's own login, whose comments and issues nestbot finds
// again (the sticky plan, the drift issue) and no one else's: Options.Login
// when given, else derived once per App or token — a GitHub App's
// "<slug>[bot]" (GET /app), a personal access token's user (GET /user), or,
// for an installation token given as a token (Actions' GITHUB_TOKEN),
// ActionsLogin. It is never empty: when it cannot be derived, the error
// says so and nothing is edited.
func (c *Client) Login(ctx context.Context) (string, error) {
	if c.opts.Login != "" {
		return c.opts.Login, nil
	}
	root := c
	if c.app != nil {
		root = c.app
	}
	root.loginMu.Lock()
	defer root.loginMu.Unlock()
	if root.login != "" {
		return root.login, nil
	}
	var login string
	var err error
	if root.apps != nil {
		login, err = root.appLogin(ctx)
	} else {
		login, err = root.tokenLogin(ctx)
	}
	if err != nil {
		return "", fmt.Errorf("%w; or give the bot's login (--github-login)", err)
	}
	if login == "" {
		return "", errors.New("github: the bot's own login came back empty: give it (--github-login)")
	}
	root.login = login
	return login, nil
}

func (c *Client) appLogin(ctx context.Context) (string, error) {
	var a *gogithub.App
	err := c.call(ctx, "github: read the GitHub App (its slug is the bot's login)", false, func(ctx context.Context) (*gogithub.Response, error) {
		var resp *gogithub.Response
		var err error
		a, resp, err = c.gh.Apps.Get(ctx, "")
		return resp, err
	})
	if err != nil {
		return "", err
	}
	if a.GetSlug() == "" {
		return "", errors.New("github: the GitHub App has no slug")
	}
	return a.GetSlug() + "[bot]", nil
}

func (c *Client) tokenLogin(ctx context.Context) (string, error) {
	var u *gogithub.User
	err := c.call(ctx, "github: read the token's user (the bot's login)", false, func(ctx context.Context) (*gogithub.Response, error) {
		var resp *gogithub.Response
		var err error
		u, resp, err = c.gh.Users.Get(ctx, "")
		return resp, err
	})
	if isStatus(err, http.StatusForbidden) {
		// "Resource not accessible by integration": an installation token,
		// as Actions' GITHUB_TOKEN is.
		return ActionsLogin, nil
	}
	if err != nil {
		return "", err
	}
	return u.GetLogin(), nil
}

// own says whether u is the bot itself.
func own(u *gogithub.User, login string) bool {
	return strings.EqualFold(u.GetLogin(), login)
}
