package aws_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go/middleware"

	"github.com/ducksnest/nestbot/lab/ec2"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
)

// lossyEndpoint stands in front of the lab's EC2 endpoint. Every request
// reaches the lab; for RunInstances, the lab launches the instance and the
// response is then lost on its way back, as a dropped connection ("reset")
// or one held until the client gives up ("timeout"). Either way the SDK
// sees a failed attempt for a call EC2 carried out, and retries it.
type lossyEndpoint struct {
	srv *ec2.Server
	// lose says what becomes of the nth response (from 1) that launched
	// instances for host during apply run: "" (delivered), "reset" or
	// "timeout".
	lose func(host string, n, run int) string

	run atomic.Int64 // the apply in progress, from 1

	mu       sync.Mutex
	requests int            // every request, retries included
	faults   map[string]int // by kind: throttle, 5xx, lag-miss, reset, timeout
	launched map[string]int // successful RunInstances responses per host
}

// holdLimit bounds how long a "timeout" holds a response (the client's
// own timeout is far shorter).
const holdLimit = 15 * time.Second

func (e *lossyEndpoint) count(kind string) {
	e.mu.Lock()
	e.faults[kind]++
	e.mu.Unlock()
}

func (e *lossyEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	form, _ := url.ParseQuery(string(body))
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, r)

	e.mu.Lock()
	e.requests++
	e.mu.Unlock()
	out := rec.Body.Bytes()
	switch {
	case rec.Code == http.StatusServiceUnavailable && bytes.Contains(out, []byte("RequestLimitExceeded")):
		e.count("throttle")
	case rec.Code >= 500 && bytes.Contains(out, []byte("InternalError")):
		e.count("5xx")
	case bytes.Contains(out, []byte("InvalidInstanceID.NotFound")):
		e.count("lag-miss") // an instance just launched, not yet visible
	}
	if form.Get("Action") == "RunInstances" && rec.Code == http.StatusOK {
		host := launchedHost(form)
		e.mu.Lock()
		e.launched[host]++
		n := e.launched[host]
		e.mu.Unlock()
		if kind := e.lose(host, n, int(e.run.Load())); kind != "" {
			e.count(kind)
			if kind == "timeout" {
				select {
				case <-r.Context().Done(): // the client gave up and hung up
				case <-time.After(holdLimit):
				}
			}
			hangUp(w)
			return
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(out)
}

// hangUp closes the connection without a response.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // closes the connection as well
	}
	conn.Close()
}

// launchedHost is the nest:host tag a RunInstances request puts on its instance.
func launchedHost(form url.Values) string {
	for k, v := range form {
		if strings.HasPrefix(k, "TagSpecification.") && strings.HasSuffix(k, ".Key") && len(v) == 1 && v[0] == reconcile.TagHost {
			return form.Get(strings.TrimSuffix(k, ".Key") + ".Value")
		}
	}
	return ""
}

func (e *lossyEndpoint) figures() (requests int, faults map[string]int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := map[string]int{}
	for k, v := range e.faults {
		f[k] = v
	}
	return e.requests, f
}

// TestFaultNoDuplicateInstances applies a fleet of ten EC2 hosts through
// the lab's endpoint with the real SDK client while the endpoint throttles,
// fails with 5xx, hides new instances from DescribeInstances for a while,
// and loses RunInstances responses after launching (every host's first
// one; all of one host's during the first apply, so that apply fails and
// is run again, as a person would, while the instance it launched is still
// invisible). However often a launch is retried or re-planned, each host
// ends with exactly one instance, and the plan converges to no changes.
func TestFaultNoDuplicateInstances(t *testing.T) {
	const (
		hostCount   = 10
		maxAttempts = 5
		maxRuns     = 8
		lag         = 1500 * time.Millisecond
		victim      = "ec2-worker-03" // every launch response lost in the first apply
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	srv := &ec2.Server{PendingDelay: 200 * time.Millisecond, StoppingDelay: -1, ShuttingDownDelay: -1}
	if _, err := srv.SeedImage(ec2.Image{Name: "NixOS-25.05-updated-kernel-image", OwnerID: nest.NixOSAMIOwner, Public: true}); err != nil {
		t.Fatal(err)
	}
	srv.SeedInstanceProfile("ducksnest-controlplane")
	srv.SeedInstanceProfile("ducksnest-worker")

	f := example(t)
	hosts := []string{"ec2-controlplane"}
	for i := 1; len(hosts) < hostCount; i++ {
		name := fmt.Sprintf("ec2-worker-%02d", i)
		h := *f.Hosts["ec2-controlplane"]
		a := *h.AWS
		a.InstanceProfile = "ducksnest-worker"
		h.Name, h.Roles, h.AWS = name, []string{"worker"}, &a
		f.Hosts[name] = &h
		hosts = append(hosts, name)
	}

	ep := &lossyEndpoint{srv: srv, faults: map[string]int{}, launched: map[string]int{},
		lose: func(host string, n, run int) string {
			switch {
			case host == victim && run == 1:
				return "reset"
			case n > 1:
				return ""
			case host == "ec2-worker-01" || host == "ec2-worker-06":
				return "timeout"
			}
			return "reset"
		}}
	hs := httptest.NewServer(ep)
	defer hs.Close()

	var operations atomic.Int64 // SDK operations, each counted once however often it is retried
	cfg := srv.Config("ap-northeast-2")
	cfg.BaseEndpoint = aws.String(hs.URL)
	cfg.HTTPClient = awshttp.NewBuildableClient().WithTimeout(2 * time.Second)
	cfg.APIOptions = append(cfg.APIOptions, func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("CountOperations",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				operations.Add(1)
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
	cli := nestaws.NewClientFromConfig(cfg, nestaws.ClientOptions{MaxAttempts: maxAttempts, MaxBackoff: 20 * time.Millisecond})
	srv.SetFaults(ec2.Faults{Seed: 11, ThrottleRate: 0.15, InternalErrorRate: 0.05, VisibilityLag: lag})

	plan := func() (*reconcile.Plan, *reconcile.Live, error) {
		cloud, err := (&nestaws.Observer{Client: cli}).Observe(ctx, f)
		if err != nil {
			return nil, nil, err
		}
		live := &reconcile.Live{ObservedAt: time.Now(), Planes: []reconcile.Plane{reconcile.PlaneCloud}, Cloud: cloud}
		p, err := reconcile.Diff(reconcile.Desired{Fleet: f}, live, reconcile.Options{})
		return p, live, err
	}

	// Runs of `nestbot apply` for the same commit, each observing afresh,
	// until one finds nothing to do.
	start := time.Now()
	runs, converged, replannedHidden := 0, false, 0
	for runs < maxRuns && ctx.Err() == nil {
		p, live, err := plan()
		if err == nil && len(p.Steps) == 0 {
			converged = true
			break
		}
		runs++
		ep.run.Store(int64(runs))
		if err != nil {
			t.Logf("run %d: plan: %v", runs, err)
			continue
		}
		for _, st := range p.Steps {
			if st.Address.Is(reconcile.PlaneCloud, reconcile.KindInstance) && st.Action == reconcile.ActionCreate {
				if len(liveInstances(srv, st.Address.Name)) > 0 {
					replannedHidden++ // launched by an earlier run, not yet visible
				}
			}
		}
		a := &nestaws.Applier{Client: cli, Fleet: f, Live: &live.Cloud,
			AuthKey: func(context.Context, string) (string, error) { return canaryKey, nil },
			Poll:    50 * time.Millisecond, WaitTimeout: 20 * time.Second}
		res, err := a.Apply(ctx, p.Steps)
		t.Logf("run %d: %d steps planned, %d applied, error: %v", runs, len(p.Steps), len(res), err)
		if runs == 1 && err == nil {
			t.Errorf("run 1 succeeded although every launch response of %s was lost", victim)
		}
	}
	elapsed := time.Since(start)
	// With the faults gone, the plan is (still) empty.
	srv.SetFaults(ec2.Faults{})
	if p, _, err := plan(); !converged || err != nil || len(p.Steps) != 0 {
		var left []string
		if err == nil {
			left = actions(p)
		}
		t.Errorf("not converged after %d runs (converged under faults: %v); without faults the plan is %v, %v", runs, converged, left, err)
	}

	duplicates := 0
	for _, h := range hosts {
		ins := liveInstances(srv, h)
		if len(ins) != 1 {
			t.Errorf("%s: %d instances, want exactly 1", h, len(ins))
		}
		duplicates += max(len(ins)-1, 0)
	}
	all := srv.Instances()
	if len(all) != hostCount {
		t.Errorf("%d instances ever launched, want %d (one per host)", len(all), hostCount)
	}
	requests, faults := ep.figures()
	for _, kind := range []string{"throttle", "5xx", "lag-miss", "reset", "timeout"} {
		if faults[kind] == 0 {
			t.Errorf("no %s fault was injected: the test did not test it", kind)
		}
	}
	if replannedHidden == 0 {
		t.Errorf("no run re-planned a launch whose instance was still invisible: the eventual-consistency case was not reached")
	}

	t.Logf("FIGURE: aws hosts: %d", hostCount)
	t.Logf("FIGURE: aws applies needed: %d (converged in %v)", runs, elapsed.Round(time.Millisecond))
	kinds := slices.Sorted(func(yield func(string) bool) {
		for k := range faults {
			if !yield(k) {
				return
			}
		}
	})
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s=%d", k, faults[k]))
	}
	t.Logf("FIGURE: aws faults injected: %s", strings.Join(parts, " "))
	t.Logf("FIGURE: aws SDK operations: %d, HTTP requests: %d, retries: %d", operations.Load(), requests, int64(requests)-operations.Load())
	t.Logf("FIGURE: aws launches re-planned while invisible: %d", replannedHidden)
	t.Logf("FIGURE: aws instances created: %d", len(all))
	t.Logf("FIGURE: aws duplicate instances: %d", duplicates)
}
