package ec2_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/ducksnest/nestbot/lab/ec2"
)

const region = "ap-northeast-2"

// fakeClock is the simulated time the lab runs on; tests advance it instead
// of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	srv    *ec2.Server
	clock  *fakeClock
	client *awsec2.Client
}

// setup starts a lab EC2 endpoint and an SDK client for it. The client uses
// the SDK's standard retryer with a single attempt, so faults surface as
// errors; tests that exercise retries build their own client.
func setup(t *testing.T, configure ...func(*ec2.Server)) *env {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)}
	srv := &ec2.Server{Now: clk.Now, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Seed: 1}
	for _, f := range configure {
		f(srv)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := &env{srv: srv, clock: clk}
	e.client = e.newClient(t, func(o *awsec2.Options) {
		o.Retryer = retry.AddWithMaxAttempts(retry.NewStandard(), 1)
	})
	return e
}

// newClient builds a real EC2 client from the lab's Config, as
// reconcile/aws's tests do: static credentials, a region, BaseEndpoint and
// the lab's request-body workaround.
func (e *env) newClient(t *testing.T, opts ...func(*awsec2.Options)) *awsec2.Client {
	t.Helper()
	return awsec2.NewFromConfig(e.srv.Config(region), opts...)
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// wantCode fails unless err is an API error with the given code.
func wantCode(t *testing.T, err error, code string) smithy.APIError {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("got %v (%T), want API error %s", err, err, code)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("got code %s (%s), want %s", ae.ErrorCode(), ae.ErrorMessage(), code)
	}
	return ae
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// tagSpec builds a TagSpecification for one resource type.
func tagSpec(resource string, kv ...string) []awsec2types.TagSpecification {
	var tags []awsec2types.Tag
	for i := 0; i+1 < len(kv); i += 2 {
		tags = append(tags, awsec2types.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
	}
	return []awsec2types.TagSpecification{{ResourceType: awsec2types.ResourceType(resource), Tags: tags}}
}

func filter(name string, values ...string) awsec2types.Filter {
	return awsec2types.Filter{Name: aws.String(name), Values: values}
}
