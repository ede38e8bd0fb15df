package bot_test

import (
	"context"
	"fmt"
	"testing"

	labgithub "github.com/ducksnest/nestbot/lab/github"
)

// BenchmarkPlanWrites plans a pull request after each of b.N pushes to it,
// on the lab's GitHub, and reports the writes (POST, PATCH, DELETE) each
// plan cost: the comment edited and one completed check run.
func BenchmarkPlanWrites(b *testing.B) {
	w := newWorld(b, nil)
	ctx := context.Background()
	owner, name := w.repo.Owner, w.repo.Name
	pr := w.openPR(ctx, b, "bench", map[string][]byte{"infra/nix/hosts/laptop-ultra/extra.nix": []byte("{ }\n")})
	ev, err := w.gh.PullRequestEvent(owner, name, pr.Number, "opened")
	if err != nil {
		b.Fatal(err)
	}
	if err := w.run(ctx, b, ev); err != nil {
		b.Fatal(err)
	}
	writes := w.gh.Writes()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		if _, err := w.gh.Commit(ctx, owner, name, labgithub.Commit{Branch: "bench", Message: fmt.Sprint("push ", i),
			Files: map[string][]byte{"infra/nix/hosts/laptop-ultra/extra.nix": fmt.Appendf(nil, "{ } # %d\n", i)}}); err != nil {
			b.Fatal(err)
		}
		ev, err := w.gh.PullRequestEvent(owner, name, pr.Number, "synchronize")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := w.run(ctx, b, ev); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(w.gh.Writes()-writes)/float64(b.N), "writes/plan")
	if cs := planComments(w.comments(b, pr.Number)); cs != 1 {
		b.Fatalf("%d plan comments after %d pushes, want 1", cs, b.N)
	}
}
