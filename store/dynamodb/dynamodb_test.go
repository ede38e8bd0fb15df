package dynamodb_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/ducksnest/nestbot/store"
	"github.com/ducksnest/nestbot/store/dynamodb"
	"github.com/ducksnest/nestbot/store/storetest"
)

// lab is one dynalite for a test; each store it opens gets a table of its own.
type lab struct {
	endpoint string
	tables   atomic.Int64
}

func newLab(t testing.TB) *lab {
	return &lab{endpoint: storetest.StartDynalite(t)}
}

// client opens a store on table, as one replica would: a client of its own.
func (l *lab) client(t testing.TB, table string) *dynamodb.Store {
	return l.clientWith(t, table, nil)
}

// clientWith is client with the store's clock now (nil: time.Now).
func (l *lab) clientWith(t testing.TB, table string, now func() time.Time) *dynamodb.Store {
	t.Helper()
	s, err := dynamodb.New(context.Background(), dynamodb.Options{Table: table, Client: l.ddbClient(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ddbClient is a DynamoDB client of the lab's dynalite.
func (l *lab) ddbClient() *ddb.Client {
	cfg := aws.Config{
		Region:      "ap-northeast-2",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDNESTBOTTEST", "dynalite-secret", ""),
	}
	return dynamodb.NewClient(cfg, l.endpoint)
}

// fresh creates a new table and opens a store on it.
func (l *lab) fresh(t testing.TB) *dynamodb.Store { return l.freshWith(t, nil) }

// freshWith is fresh with the store's clock now (nil: time.Now).
func (l *lab) freshWith(t testing.TB, now func() time.Time) *dynamodb.Store {
	t.Helper()
	s := l.clientWith(t, fmt.Sprintf("nestbot-%d", l.tables.Add(1)), now)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestQueueConformance(t *testing.T) {
	l := newLab(t)
	storetest.TestQueue(t, func(t *testing.T, now func() time.Time) store.Queue { return l.freshWith(t, now) })
}

func TestRetentionConformance(t *testing.T) {
	l := newLab(t)
	storetest.TestRetention(t, func(t *testing.T, now func() time.Time) store.Queue { return l.freshWith(t, now) })
}

func TestLockerConformance(t *testing.T) {
	l := newLab(t)
	storetest.TestLocker(t, func(t *testing.T, now func() time.Time) store.Locker { return l.freshWith(t, now) })
}

func TestCreateTableTwiceKeepsTheTable(t *testing.T) {
	l := newLab(t)
	s := l.fresh(t)
	ctx := context.Background()
	if err := s.Enqueue(ctx, store.Job{ID: "d-1", Event: "push", Key: "o/r"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTable(ctx); err != nil {
		t.Fatalf("CreateTable of an existing table: %v", err)
	}
	if n, err := s.Depth(ctx); err != nil || n != 1 {
		t.Errorf("Depth after the second CreateTable = %d, %v; want the job still there", n, err)
	}
}

func TestNewNeedsATable(t *testing.T) {
	_, err := dynamodb.New(context.Background(), dynamodb.Options{})
	if err == nil {
		t.Fatal("New without a table: nil error")
	}
}

// A large payload is stored compressed and comes back whole; one that does
// not fit in an item even compressed is refused, saying why.
func TestLargePayloads(t *testing.T) {
	l := newLab(t)
	s := l.fresh(t)
	ctx := context.Background()
	var big bytes.Buffer
	big.WriteString(`{"commits":[`)
	for i := range 2000 {
		fmt.Fprintf(&big, `{"id":"%040x","message":"rollout: host %d"},`, i, i%7)
	}
	big.WriteString(`{}]}`)
	if big.Len() < 100<<10 {
		t.Fatalf("payload of %d bytes: too small to test compression", big.Len())
	}
	if err := s.Enqueue(ctx, store.Job{ID: "big", Event: "push", Key: "o/r", Payload: big.Bytes()}); err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(ctx, "w", time.Minute)
	if err != nil || c == nil {
		t.Fatalf("Claim = %v, %v", c, err)
	}
	if !bytes.Equal(c.Job.Payload, big.Bytes()) {
		t.Errorf("the payload came back as %d bytes, want the %d put", len(c.Job.Payload), big.Len())
	}

	noise := make([]byte, 600<<10)
	rand.Read(noise)
	err = s.Enqueue(ctx, store.Job{ID: "huge", Event: "push", Key: "o/r", Payload: noise})
	if err == nil || !strings.Contains(err.Error(), "400 KB") {
		t.Errorf("Enqueue of %d incompressible bytes: %v, want a refusal naming the item limit", len(noise), err)
	}
}

// A fenced key belongs to the lock it was first written under.
func TestFencedKeyBelongsToOneLock(t *testing.T) {
	s := newLab(t).fresh(t)
	ctx := context.Background()
	one, err := s.Acquire(ctx, "fleet/one", "r", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	two, err := s.Acquire(ctx, "fleet/two", "r", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Fenced(ctx, one, "applied", []byte("1")); err != nil {
		t.Fatal(err)
	}
	err = s.Fenced(ctx, two, "applied", []byte("2"))
	if err == nil || errors.Is(err, store.ErrFenced) || !strings.Contains(err.Error(), "belongs to lock fleet/one") {
		t.Errorf("Fenced under another lock: %v, want a refusal naming fleet/one", err)
	}
	if got, err := s.Get(ctx, "applied"); err != nil || string(got) != "1" {
		t.Errorf("Get = %q, %v; want 1", got, err)
	}
}

// An error from DynamoDB (here: a table that does not exist) names the
// table and never the credentials.
func TestErrorsNameTheTableNotTheSecret(t *testing.T) {
	const canary = "canary-secret-7f3a9c"
	l := newLab(t)
	cfg := aws.Config{Region: "ap-northeast-2", Credentials: credentials.NewStaticCredentialsProvider("AKIDCANARY", canary, "")}
	s, err := dynamodb.New(context.Background(), dynamodb.Options{Table: "missing", Client: dynamodb.NewClient(cfg, l.endpoint)})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Enqueue(context.Background(), store.Job{ID: "d", Event: "push", Key: "o/r"})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Enqueue into a missing table: %v, want an error naming it", err)
	}
	if strings.Contains(err.Error(), canary) {
		t.Errorf("the error holds the secret access key: %v", err)
	}
}
