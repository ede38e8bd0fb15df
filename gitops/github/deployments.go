package github

import (
	"context"
	"fmt"

	gogithub "github.com/google/go-github/v93/github"
)

// maxDeploymentDescription is GitHub's limit on a deployment's and a
// deployment status's description.
const maxDeploymentDescription = 140

// CreateDeployment records a deployment of ref (a commit) to environment
// (the fleet's name) and returns its id. It never merges the default
// branch into ref (auto_merge false) and asks for no passing checks first
// (required_contexts empty): the apply has been decided already, and a
// failing check must not hide it. The environment is a production one and
// not transient.
func (c *Client) CreateDeployment(ctx context.Context, r Repo, ref, environment, description string) (int64, error) {
	op := fmt.Sprintf("github: create a deployment of %s to %s in %s", short(ref), environment, r)
	if ref == "" || environment == "" {
		return 0, fmt.Errorf("%s: a deployment needs a ref (the commit applied) and an environment (the fleet)", op)
	}
	body := gogithub.DeploymentRequest{
		Ref:                   ref,
		Task:                  new("deploy"),
		AutoMerge:             new(false),
		RequiredContexts:      []string{},
		Environment:           new(environment),
		Description:           optional(cut(description, maxDeploymentDescription)),
		TransientEnvironment:  new(false),
		ProductionEnvironment: new(true),
	}
	var d *gogithub.Deployment
	err := c.do(ctx, op, true, func(ctx context.Context) (*gogithub.Response, error) {
		var resp *gogithub.Response
		var err error
		d, resp, err = c.gh.Repositories.CreateDeployment(ctx, r.Owner, r.Name, body)
		return resp, err
	})
	if err != nil {
		return 0, err
	}
	return d.GetID(), nil
}

// DeploymentStatus adds a status to deployment id: state is "queued",
// "in_progress", "success", "failure", "error" or "inactive"; logURL, when
// given, links to the apply's log. A success marks the environment's
// earlier deployments inactive.
func (c *Client) DeploymentStatus(ctx context.Context, r Repo, id int64, state, description, logURL string) error {
	op := fmt.Sprintf("github: set deployment %d in %s to %s", id, r, state)
	switch state {
	case "queued", "in_progress", "success", "failure", "error", "inactive", "pending":
	default:
		return fmt.Errorf("%s: %q is not a deployment state: use queued, in_progress, success, failure, error or inactive", op, state)
	}
	body := gogithub.DeploymentStatusRequest{
		State:       state,
		LogURL:      optional(logURL),
		Description: optional(cut(description, maxDeploymentDescription)),
	}
	return c.do(ctx, op, true, func(ctx context.Context) (*gogithub.Response, error) {
		_, resp, err := c.gh.Repositories.CreateDeploymentStatus(ctx, r.Owner, r.Name, id, body)
		return resp, err
	})
}
