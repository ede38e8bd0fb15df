package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/gitops/fleet"
	"github.com/ducksnest/nestbot/lab"
	"github.com/ducksnest/nestbot/reconcile"
)

func newLabPRCmd(io *IO) *cobra.Command {
	var labURL, user string
	cmd := &cobra.Command{
		Use:   "pr",
		Short: "Act on the lab's GitHub as a person: open, comment on, approve, merge and show pull requests",
		Long: `The pr verbs drive the lab's GitHub (nestlab up --github) from a shell.
Each action is told to nestbot serve through the repository's webhook, signed,
as GitHub tells it; show prints the pull request as a person sees it: the
plan comment, the check runs, the deployments.`,
	}
	cmd.PersistentFlags().StringVar(&labURL, "lab-url", "", "the lab's controls (NESTBOT_LAB_URL, from nestlab up's env file)")
	cmd.PersistentFlags().StringVar(&user, "as", "", "act as this user (default: the repository's owner)")
	noLab := errors.New("no lab: source the env file nestlab up --github wrote (NESTBOT_LAB_URL), or pass --lab-url")
	post := func(path string, body any) (lab.PRView, error) {
		if labURL == "" {
			return lab.PRView{}, noLab
		}
		data, _ := json.Marshal(body)
		resp, err := http.Post(strings.TrimRight(labURL, "/")+path, "application/json", bytes.NewReader(data))
		return decodeView(resp, err)
	}
	open := &cobra.Command{
		Use:   "open --branch NAME PATH=CONTENT...",
		Short: "Commit files on a new branch and open a pull request from it",
		Long: `Open commits each PATH=CONTENT on a new branch (PATH=@FILE reads the
content from FILE; -PATH deletes PATH) and opens a pull request from it.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			branch, _ := c.Flags().GetString("branch")
			title, _ := c.Flags().GetString("title")
			o := lab.PROpen{Branch: branch, Title: title, User: user, Files: map[string]string{}}
			for _, a := range args {
				if p, ok := strings.CutPrefix(a, "-"); ok {
					o.Remove = append(o.Remove, p)
					continue
				}
				p, content, ok := strings.Cut(a, "=")
				if !ok {
					return fmt.Errorf("%q: give PATH=CONTENT, PATH=@FILE or -PATH", a)
				}
				if f, ok := strings.CutPrefix(content, "@"); ok {
					data, err := os.ReadFile(f)
					if err != nil {
						return err
					}
					content = string(data)
				}
				o.Files[p] = content
			}
			v, err := post("/pr/open", o)
			if err != nil {
				return err
			}
			fmt.Fprintf(io.Out, "Opened #%d from %s (head %s)%s\n", v.PR.Number, v.PR.HeadRef, fleet.ShortRev(v.PR.HeadSHA), delivered(v))
			return nil
		},
	}
	open.Flags().String("branch", "", "the new branch")
	open.Flags().String("title", "", "the pull request's title")
	open.MarkFlagRequired("branch")
	action := func(use, short, path string, withBody bool) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.RangeArgs(1, 2),
			RunE: func(_ *cobra.Command, args []string) error {
				n, err := strconv.Atoi(strings.TrimPrefix(args[0], "#"))
				if err != nil {
					return fmt.Errorf("%q is not a pull request number", args[0])
				}
				a := lab.PRAction{Number: n, User: user}
				if withBody {
					if len(args) < 2 {
						return errors.New("give the comment's text, e.g. '/nest plan'")
					}
					a.Body = args[1]
				}
				v, err := post(path, a)
				if err != nil {
					return err
				}
				fmt.Fprintf(io.Out, "#%d: done%s\n", n, delivered(v))
				return nil
			},
		}
	}
	var wait string
	var timeout time.Duration
	show := &cobra.Command{
		Use:   "show NUMBER",
		Short: "Show a pull request: nestbot's comments, check runs and deployments",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(strings.TrimPrefix(args[0], "#"))
			if err != nil {
				return fmt.Errorf("%q is not a pull request number", args[0])
			}
			if labURL == "" {
				return noLab
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			for {
				resp, err := http.Get(strings.TrimRight(labURL, "/") + "/pr/" + strconv.Itoa(n))
				v, err := decodeView(resp, err)
				if err != nil {
					return err
				}
				if done, err := waitedFor(v, wait); err != nil || done {
					printView(io, v)
					return err
				}
				select {
				case <-ctx.Done():
					printView(io, v)
					return fmt.Errorf("waited %s for %s on #%d", timeout, wait, n)
				case <-time.After(250 * time.Millisecond):
				}
			}
		},
	}
	show.Flags().StringVar(&wait, "wait", "", "wait until the plan is done (plan: its check run completed) or a deployment finished (deployment)")
	show.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long --wait waits")
	cmd.AddCommand(open,
		action("comment NUMBER TEXT", "Comment on a pull request (a /nest command, say)", "/pr/comment", true),
		action("approve NUMBER", "Approve a pull request", "/pr/approve", false),
		action("merge NUMBER", "Merge a pull request; the push to the default branch applies it", "/pr/merge", false),
		show)
	return cmd
}

func decodeView(resp *http.Response, err error) (lab.PRView, error) {
	var v lab.PRView
	if err != nil {
		return v, fmt.Errorf("the lab does not answer (is nestlab up --github running?): %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(data, &e)
		return v, fmt.Errorf("lab: %s", cmp.Or(e.Error, strings.TrimSpace(string(data))))
	}
	return v, json.Unmarshal(data, &v)
}

func delivered(v lab.PRView) string {
	if v.Delivery == nil {
		return "; no webhook configured"
	}
	return fmt.Sprintf("; nestbot answered %d", v.Delivery.Status)
}

// waitedFor says whether v shows what --wait waits for.
func waitedFor(v lab.PRView, wait string) (bool, error) {
	switch wait {
	case "":
		return true, nil
	case "plan":
		// The check run comes last: the comment is in place by then.
		for _, c := range v.Checks {
			if c.Name == "nest/plan" && c.Status == "completed" {
				return true, nil
			}
		}
	case "deployment":
		for _, d := range v.Deployments {
			if n := len(d.Statuses); n > 0 && d.Statuses[n-1].State != "in_progress" && d.Statuses[n-1].State != "queued" {
				return true, nil
			}
		}
	default:
		return false, fmt.Errorf("--wait %q: use plan or deployment", wait)
	}
	return false, nil
}

func printView(io *IO, v lab.PRView) {
	state := v.PR.State
	if v.PR.Merged {
		state = "merged"
	}
	fmt.Fprintf(io.Out, "#%d %s (%s → %s, %s, head %s)\n", v.PR.Number, v.PR.Title, v.PR.HeadRef, v.PR.BaseRef, state, fleet.ShortRev(v.PR.HeadSHA))
	for _, c := range v.Comments {
		fmt.Fprintf(io.Out, "\n── comment by %s ──\n%s\n", c.User, strings.TrimSpace(reconcile.StripMarker(c.Body)))
	}
	if len(v.Checks)+len(v.Deployments) > 0 {
		fmt.Fprintln(io.Out)
		tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
		for _, c := range v.Checks {
			fmt.Fprintf(tw, "check\t%s\t%s\t%s\n", c.Name, cmp.Or(c.Conclusion, c.Status), c.Title)
		}
		for _, d := range v.Deployments {
			st := "created"
			if n := len(d.Statuses); n > 0 {
				st = d.Statuses[n-1].State + "\t" + d.Statuses[n-1].Description
			}
			fmt.Fprintf(tw, "deployment\t%s\t%s\n", d.Environment, st)
		}
		tw.Flush()
	}
}
