package s3_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ducksnest/nestbot/store"
	"github.com/ducksnest/nestbot/store/s3"
	"github.com/ducksnest/nestbot/store/storetest"
)

// lab is one s3rver for a test.
type lab struct {
	endpoint string
	buckets  atomic.Int64
}

func newLab(t testing.TB) *lab { return &lab{endpoint: storetest.StartS3rver(t)} }

// client is an S3 client of the lab; a non-nil rec sees every request.
func (l *lab) client(rec *recorder) *awss3.Client {
	cfg := aws.Config{
		Region:      "ap-northeast-2",
		Credentials: credentials.NewStaticCredentialsProvider("S3RVER", "S3RVER", ""),
	}
	if rec != nil {
		cfg.HTTPClient = rec
	}
	return s3.NewClient(cfg, l.endpoint, true)
}

// bucket creates a new bucket.
func (l *lab) bucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("nestbot-%d", l.buckets.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := l.client(nil).CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

func (l *lab) open(t testing.TB, o s3.Options) *s3.Store {
	t.Helper()
	if o.Client == nil {
		o.Client = l.client(nil)
	}
	s, err := s3.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestArtifactsConformance(t *testing.T) {
	l := newLab(t)
	storetest.TestArtifacts(t, func(t *testing.T) store.Artifacts {
		return l.open(t, s3.Options{Bucket: l.bucket(t)})
	})
}

// Stores under different prefixes of one bucket see only their own objects.
func TestArtifactsConformanceUnderPrefixes(t *testing.T) {
	l := newLab(t)
	bucket := l.bucket(t)
	var n atomic.Int64
	storetest.TestArtifacts(t, func(t *testing.T) store.Artifacts {
		return l.open(t, s3.Options{Bucket: bucket, Prefix: fmt.Sprintf("fleet-%d", n.Add(1))})
	})
}

// The audit log reads every page of the listing, in order.
func TestAuditLogReadsEveryPage(t *testing.T) {
	l := newLab(t)
	a := l.open(t, s3.Options{Bucket: l.bucket(t), Prefix: "nestbot/"})
	s3.SetPageSize(a, 4)
	ctx := context.Background()
	t0 := time.Date(2025, 7, 8, 10, 0, 0, 0, time.UTC)
	const n = 11
	// Written out of order: the log is in the order the applies started.
	for _, i := range []int{3, 0, 10, 7, 1, 9, 2, 8, 4, 6, 5} {
		rec := store.AuditRecord{Fleet: "ducksnest", Revision: fmt.Sprintf("rev-%02d", i), Trigger: "push",
			Started: t0.Add(time.Duration(i) * time.Minute), Finished: t0.Add(time.Duration(i)*time.Minute + time.Second), Result: "success"}
		if err := a.Audit(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := a.AuditLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Revision)
	}
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("rev-%02d", i)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("AuditLog revisions = %v, want %v", got, want)
	}
}

// recorder is an HTTP client that remembers the headers of each request.
type recorder struct {
	mu   sync.Mutex
	reqs []http.Request
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, http.Request{Method: req.Method, URL: req.URL, Header: req.Header.Clone()})
	r.mu.Unlock()
	return http.DefaultClient.Do(req)
}

func (r *recorder) puts() []http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []http.Request
	for _, q := range r.reqs {
		if q.Method == http.MethodPut {
			out = append(out, q)
		}
	}
	return out
}

// With a KMS key every object is written with SSE-KMS under it; without,
// no encryption header is sent (the bucket's default applies). s3rver
// accepts the headers without encrypting: what is checked is what nestbot
// asks S3 for.
func TestKMSKeyAsksForSSEKMSOnEveryWrite(t *testing.T) {
	const keyARN = "arn:aws:kms:ap-northeast-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	l := newLab(t)
	bucket := l.bucket(t)
	ctx := context.Background()
	for _, kms := range []string{keyARN, ""} {
		rec := &recorder{}
		a := l.open(t, s3.Options{Bucket: bucket, Prefix: "kms-" + fmt.Sprint(kms != ""), KMSKeyID: kms, Client: l.client(rec)})
		if err := a.PutPlan(ctx, "ducksnest/pr-1", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := a.Audit(ctx, store.AuditRecord{Fleet: "ducksnest", Revision: "abc", Started: time.Now(), Result: "success"}); err != nil {
			t.Fatal(err)
		}
		puts := rec.puts()
		if len(puts) != 2 {
			t.Fatalf("%d PUT requests, want 2 (plan and audit record)", len(puts))
		}
		for _, p := range puts {
			sse, id := p.Header.Get("X-Amz-Server-Side-Encryption"), p.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id")
			switch {
			case kms != "" && (sse != "aws:kms" || id != keyARN):
				t.Errorf("PUT %s with KMSKeyID: encryption %q key %q, want aws:kms and %s", p.URL.Path, sse, id, keyARN)
			case kms == "" && (sse != "" || id != ""):
				t.Errorf("PUT %s without KMSKeyID: encryption %q key %q, want neither", p.URL.Path, sse, id)
			}
		}
		if got, err := a.GetPlan(ctx, "ducksnest/pr-1"); err != nil || string(got) != "{}" {
			t.Errorf("GetPlan = %s, %v", got, err)
		}
	}
}

func TestBadPlanKeysAreRefused(t *testing.T) {
	a, err := s3.New(context.Background(), s3.Options{Bucket: "b", Client: awss3.New(awss3.Options{Region: "us-east-1"})})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", "/abs", "a/../../etc", "a//b", "dir/", ".", "a\nb", strings.Repeat("k", 600)} {
		if err := a.PutPlan(context.Background(), key, []byte(`{}`)); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("PutPlan %q: %v, want a refusal", key, err)
		}
		if _, err := a.GetPlan(context.Background(), key); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetPlan %q: %v, want a refusal", key, err)
		}
	}
}

func TestNewNeedsABucket(t *testing.T) {
	if _, err := s3.New(context.Background(), s3.Options{}); err == nil {
		t.Fatal("New without a bucket: nil error")
	}
}
