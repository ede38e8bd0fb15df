package dynamodb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ducksnest/nestbot/store"
	"github.com/ducksnest/nestbot/store/dynamodb"
	"github.com/ducksnest/nestbot/store/storetest"
)

// expireAtOf reads the item's expire_at (Unix seconds), ok false when it has none.
func expireAtOf(t *testing.T, c *ddb.Client, table, pk, sk string) (int64, bool) {
	t.Helper()
	out, err := c.GetItem(context.Background(), &ddb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: sk}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil || out.Item == nil {
		t.Fatalf("GetItem %s: %v, %v", pk, out, err)
	}
	v, ok := out.Item["expire_at"]
	if !ok {
		return 0, false
	}
	n, isN := v.(*types.AttributeValueMemberN)
	if !isN {
		t.Fatalf("%s: expire_at is %T, want a number (Time to Live reads only numbers)", pk, v)
	}
	sec, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		t.Fatalf("%s: expire_at %q: %v", pk, n.Value, err)
	}
	return sec, true
}

// TestItemsCarryTheirTimeToLive reads the items themselves: a queued or
// claimed job has no expire_at (Time to Live must never delete work), a
// done one has its finish plus the retention in Unix seconds, and a key
// hold has its lease's end plus the retention.
func TestItemsCarryTheirTimeToLive(t *testing.T) {
	l := newLab(t)
	start := time.Date(2026, 3, 1, 12, 0, 0, 500_000_000, time.UTC)
	clock := storetest.NewClock(start)
	s := l.freshWith(t, clock.Now)
	raw := l.ddbClient()
	ctx := context.Background()
	if err := s.Enqueue(ctx, store.Job{ID: "d-1", Event: "push", Key: "o/r"}); err != nil {
		t.Fatal(err)
	}
	if at, ok := expireAtOf(t, raw, s.Table(), "job#d-1", "job"); ok {
		t.Errorf("a queued job has expire_at %d; want none", at)
	}
	c, err := s.Claim(ctx, "worker", time.Hour)
	if err != nil || c == nil {
		t.Fatalf("Claim = %v, %v", c, err)
	}
	if at, ok := expireAtOf(t, raw, s.Table(), "job#d-1", "job"); ok {
		t.Errorf("a claimed job has expire_at %d; want none", at)
	}
	// Rounded up to the second: never before the retention ends.
	wantHold := start.Add(time.Hour+store.DeliveryRetention).Unix() + 1
	if at, ok := expireAtOf(t, raw, s.Table(), "key#o/r", "key"); !ok || at != wantHold {
		t.Errorf("the key hold's expire_at = %d (present %v), want %d", at, ok, wantHold)
	}
	finished := start.Add(10 * time.Minute)
	clock.Set(finished)
	if err := s.Done(ctx, c, store.ResultOK); err != nil {
		t.Fatal(err)
	}
	if at, ok := expireAtOf(t, raw, s.Table(), "job#d-1", "job"); !ok || at != finished.Add(store.DeliveryRetention).Unix()+1 {
		t.Errorf("the done job's expire_at = %d (present %v), want %d", at, ok, finished.Add(store.DeliveryRetention).Unix()+1)
	}
	// Forgotten and enqueued again: work again, so no expiry.
	clock.Set(finished.Add(store.DeliveryRetention + time.Second))
	if err := s.Enqueue(ctx, store.Job{ID: "d-1", Event: "push", Key: "o/r"}); err != nil {
		t.Fatal(err)
	}
	if at, ok := expireAtOf(t, raw, s.Table(), "job#d-1", "job"); ok {
		t.Errorf("the job enqueued again has expire_at %d; want none", at)
	}
}

// ttlProxy stands between a store and dynalite (which has no Time to
// Live): it records the Time to Live requests, answers DescribeTimeToLive
// with describe when set, UpdateTimeToLive with update when set, each as
// DynamoDB's JSON protocol does, and passes everything else on.
type ttlProxy struct {
	describe, update string // response bodies ("" passes the call on)
	updateStatus     int
	mu               sync.Mutex
	calls            []string // X-Amz-Target, then the body
}

func (p *ttlProxy) start(t *testing.T, endpoint string) string {
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	next := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		if strings.HasSuffix(op, "TimeToLive") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			p.mu.Lock()
			p.calls = append(p.calls, op+" "+string(body))
			p.mu.Unlock()
			answer, status := "", http.StatusOK
			switch {
			case strings.HasSuffix(op, ".DescribeTimeToLive"):
				answer = p.describe
			case strings.HasSuffix(op, ".UpdateTimeToLive"):
				answer, status = p.update, p.updateStatus
			}
			if answer != "" {
				w.Header().Set("Content-Type", "application/x-amz-json-1.0")
				w.WriteHeader(status)
				io.WriteString(w, answer)
				return
			}
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (p *ttlProxy) store(t *testing.T, endpoint, table string) *dynamodb.Store {
	cfg := aws.Config{Region: "ap-northeast-2", Credentials: credentials.NewStaticCredentialsProvider("AKIDNESTBOTTEST", "dynalite-secret", "")}
	s, err := dynamodb.New(context.Background(), dynamodb.Options{Table: table, Client: dynamodb.NewClient(cfg, p.start(t, endpoint))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *ttlProxy) updates() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, c := range p.calls {
		if body, ok := strings.CutPrefix(c, "DynamoDB_20120810.UpdateTimeToLive "); ok {
			var m map[string]any
			json.Unmarshal([]byte(body), &m)
			out = append(out, m)
		}
	}
	return out
}

func TestCreateTableTurnsOnTimeToLive(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()

	t.Run("OnATableWithout", func(t *testing.T) {
		// dynalite answers DescribeTimeToLive with DISABLED and knows no
		// UpdateTimeToLive (UnknownOperationException): CreateTable asks,
		// and goes on, since expiry does not depend on the deleting.
		p := &ttlProxy{}
		s := p.store(t, l.endpoint, "ttl-1")
		if err := s.CreateTable(ctx); err != nil {
			t.Fatalf("CreateTable: %v", err)
		}
		u := p.updates()
		if len(u) != 1 {
			t.Fatalf("UpdateTimeToLive sent %d times, want once: %q", len(u), p.calls)
		}
		spec, _ := u[0]["TimeToLiveSpecification"].(map[string]any)
		if u[0]["TableName"] != "ttl-1" || spec["AttributeName"] != "expire_at" || spec["Enabled"] != true {
			t.Errorf("UpdateTimeToLive %v, want table ttl-1, expire_at enabled", u[0])
		}
	})
	t.Run("AlreadyOn", func(t *testing.T) {
		p := &ttlProxy{describe: `{"TimeToLiveDescription":{"AttributeName":"expire_at","TimeToLiveStatus":"ENABLED"}}`}
		s := p.store(t, l.endpoint, "ttl-2")
		if err := s.CreateTable(ctx); err != nil {
			t.Fatalf("CreateTable: %v", err)
		}
		if u := p.updates(); len(u) != 0 {
			t.Errorf("UpdateTimeToLive sent on a table whose Time to Live is on: %v", u)
		}
	})
	t.Run("RefusedSaysSo", func(t *testing.T) {
		p := &ttlProxy{update: `{"__type":"com.amazon.coral.service#AccessDeniedException","Message":"not authorized to perform: dynamodb:UpdateTimeToLive"}`,
			updateStatus: http.StatusBadRequest}
		s := p.store(t, l.endpoint, "ttl-3")
		err := s.CreateTable(ctx)
		if err == nil || !strings.Contains(err.Error(), "Time to Live") || !strings.Contains(err.Error(), "dynamodb:UpdateTimeToLive") {
			t.Errorf("CreateTable with UpdateTimeToLive refused: %v, want an error naming Time to Live and the refusal", err)
		}
	})
}
