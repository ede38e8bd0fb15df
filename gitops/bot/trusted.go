package bot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/ducksnest/nestbot/gitops/fleet"
	"github.com/ducksnest/nestbot/nest"
)

// trustedRef is where the default branch is fetched into a job's clone.
const trustedRef = "refs/nest/trusted"

// trusted reads nest.yaml on branch, the repository's default branch (as
// GitHub says), from co's repository: the values a pull request is planned
// with wherever they decide where credentials go or which are used, and
// the apply policy (fleet.Desired.Trust). It returns nil, with why, when
// the default branch holds no nest.yaml or one that does not load: nothing
// is trusted then.
func (b *Bot) trusted(ctx context.Context, co *checkout, branch string) (*fleet.Desired, string, error) {
	if branch == "" {
		return nil, "", errors.New("GitHub did not say which branch is the repository's default")
	}
	if err := co.repo.Fetch(ctx, "+refs/heads/"+branch+":"+trustedRef); err != nil {
		return nil, "", fmt.Errorf("fetch the default branch %s: %w", branch, err)
	}
	tree, err := co.repo.Tree(trustedRef)
	if err != nil {
		return nil, "", err
	}
	d, err := fleet.LoadTree(tree, path.Clean(b.cfg.File))
	var invalid nest.Errors
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Sprintf("%s has no `%s` yet", branch, b.cfg.File), nil
	case errors.As(err, &invalid):
		return nil, fmt.Sprintf("`%s` on %s does not load (%d %s)", b.cfg.File, branch, len(invalid), plural(len(invalid), "mistake")), nil
	case err != nil:
		return nil, "", fmt.Errorf("`%s` on %s: %w", b.cfg.File, branch, err)
	}
	return d, "", nil
}

// deferredNote is the plan's note about what a pull request changes of the
// trusted values: planned with the default branch's, in effect after merge.
func deferredNote(changed []string, branch, why string) string {
	from := "the values on " + branch
	if why != "" {
		from = "none of them (" + why + ")"
	}
	return fmt.Sprintf("This pull request changes %s, which decide where nestbot's credentials go, which are used, "+
		"who can decrypt the keys, or when it applies. It was planned with %s; the change takes effect after merge, "+
		"and /nest apply refuses this pull request (merge it instead).", strings.Join(changed, ", "), from)
}
