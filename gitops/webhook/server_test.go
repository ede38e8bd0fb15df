package webhook_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/gitops/webhook"
	"github.com/ducksnest/nestbot/internal/buildinfo"
	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/store"
)

// scrape reads base/metrics into "name{labels}" -> value.
func scrape(t *testing.T, base string) map[string]string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestNewRefusesToStartWithoutASecret(t *testing.T) {
	db := openDB(t)
	run := func(context.Context, store.Job) error { return nil }
	for name, cfg := range map[string]webhook.Config{
		"no secret":    {Queue: db.Queue(), Run: run},
		"empty secret": {Secrets: [][]byte{[]byte(secret), {}}, Queue: db.Queue(), Run: run},
		"no queue":     {Secrets: [][]byte{[]byte(secret)}, Run: run},
		"no run":       {Secrets: [][]byte{[]byte(secret)}, Queue: db.Queue()},
	} {
		if _, err := webhook.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error holds the secret: %v", name, err)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	db := openDB(t)
	srv, err := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}, Queue: db.Queue(), Logger: logger(t),
		Run: func(context.Context, store.Job) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	// Not yet running: alive, not ready.
	pre := newRecorderServer(t, srv)
	if s := get(t, pre+"/healthz"); s != http.StatusOK {
		t.Errorf("/healthz before Run: %d, want 200", s)
	}
	if s := get(t, pre+"/readyz"); s != http.StatusServiceUnavailable {
		t.Errorf("/readyz before Run: %d, want 503", s)
	}

	base, stop := runServer(t, srv)
	testkit.WaitFor(t, "ready", 5*time.Second, func() bool { return get(t, base+"/readyz") == http.StatusOK })
	if s := get(t, base+"/healthz"); s != http.StatusOK {
		t.Errorf("/healthz: %d, want 200", s)
	}
	// The store goes away: not ready, still alive.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s := get(t, base+"/readyz"); s != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the store closed: %d, want 503", s)
	}
	if s := get(t, base+"/healthz"); s != http.StatusOK {
		t.Errorf("/healthz with the store closed: %d, want 200", s)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s := get(t, pre+"/readyz"); s != http.StatusServiceUnavailable {
		t.Errorf("/readyz after Run returned: %d, want 503", s)
	}
}

func TestMetricsCountDeliveriesJobsAndWhatOthersRecord(t *testing.T) {
	db := openDB(t)
	release := make(chan struct{})
	base, srv := serve(t, webhook.Config{Queue: db.Queue(), Run: func(ctx context.Context, j store.Job) error {
		<-release
		return nil
	}})
	send(t, base+"/webhook", "push", newDelivery(), pushTo("o/r", "a1"))
	send(t, base+"/webhook", "push", newDelivery(), pushTo("o/r", "a2"))
	send(t, base+"/webhook", "watch", newDelivery(), []byte(`{}`))
	send(t, base+"/webhook", "ping", newDelivery(), []byte(`{"zen":"Design for failure."}`))
	r := request(t, base+"/webhook", "push", newDelivery(), pushTo("o/r", "a3"))
	r.Header.Set(webhook.HeaderSignature, webhook.Sign([]byte("forged"), pushTo("o/r", "a3")))
	do(t, r)
	r = request(t, base+"/webhook", "random-event-name", newDelivery(), []byte(`{}`))
	do(t, r)

	m := srv.Metrics()
	m.GitHubCall("PATCH", 200)
	m.GitHubCall("GET", 0)
	m.RateLimitRemaining(4987)
	m.Plan("changes")
	m.Apply("success")
	m.Hosts(map[string]int{"current": 2, "behind": 1})

	got := scrape(t, base)
	for series, want := range map[string]string{
		`nestbot_webhook_deliveries_total{event="push",result="accepted"}`:            "2",
		`nestbot_webhook_deliveries_total{event="other",result="ignored"}`:            "2",
		`nestbot_webhook_deliveries_total{event="ping",result="pong"}`:                "1",
		`nestbot_webhook_deliveries_total{event="unverified",result="bad_signature"}`: "1",
		`nestbot_queue_depth`: "2", // one running, one waiting for its key
		`nestbot_github_api_calls_total{method="PATCH",status="200"}`: "1",
		`nestbot_github_api_calls_total{method="GET",status="error"}`: "1",
		`nestbot_github_rate_limit_remaining`:                         "4987",
		`nestbot_plans_total{result="changes"}`:                       "1",
		`nestbot_applies_total{result="success"}`:                     "1",
		`nestbot_hosts{state="current"}`:                              "2",
		`nestbot_hosts{state="behind"}`:                               "1",
	} {
		if got[series] != want {
			t.Errorf("%s = %q, want %s", series, got[series], want)
		}
	}
	close(release)
	testkit.WaitFor(t, "both jobs done", 10*time.Second, func() bool { return depth(t, db.Queue()) == 0 })
	got = scrape(t, base)
	if v := got[`nestbot_job_duration_seconds_count{event="push",result="ok"}`]; v != "2" {
		t.Errorf("push jobs ok in the histogram: %q, want 2", v)
	}
	if v := got[`nestbot_queue_depth`]; v != "0" {
		t.Errorf("nestbot_queue_depth = %q, want 0", v)
	}
}

// newRecorderServer serves srv's routes without running it.
func newRecorderServer(t *testing.T, srv *webhook.Server) string {
	t.Helper()
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// TestMetricsSayWhichBuildRuns: /metrics carries nestbot_build_info with
// the labels nestbot version prints (this test binary is a devel build).
func TestMetricsSayWhichBuildRuns(t *testing.T) {
	db := openDB(t)
	base, _ := serve(t, webhook.Config{Queue: db.Queue(), Run: func(context.Context, store.Job) error { return nil }})
	in := buildinfo.Read()
	goos, goarch, _ := strings.Cut(in.Platform, "/")
	series := fmt.Sprintf(`nestbot_build_info{goarch=%q,goos=%q,goversion=%q,revision=%q,version=%q}`, goarch, goos, in.GoVersion, in.Commit, in.Version)
	got := scrape(t, base)
	if got[series] != "1" {
		var build []string
		for k, v := range got {
			if strings.HasPrefix(k, "nestbot_build_info") {
				build = append(build, k+" "+v)
			}
		}
		t.Fatalf("no %s 1 in /metrics; build info series: %q", series, build)
	}
}
