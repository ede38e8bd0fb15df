package dynamodb_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

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
	t.Helper()
	cfg := aws.Config{
		Region:      "ap-northeast-2",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDNESTBOTTEST", "dynalite-secret", ""),
	}
	s, err := dynamodb.New(context.Background(), dynamodb.Options{Table: table, Client: dynamodb.NewClient(cfg, l.endpoint)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fresh creates a new table and opens a store on it.
func (l *lab) fresh(t testing.TB) *dynamodb.Store {
	t.Helper()
	s := l.client(t, fmt.Sprintf("nestbot-%d", l.tables.Add(1)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestQueueConformance(t *testing.T) {
	l := newLab(t)
	storetest.TestQueue(t, func(t *testing.T) store.Queue { return l.fresh(t) })
}

func TestLockerConformance(t *testing.T) {
	l := newLab(t)
	storetest.TestLocker(t, func(t *testing.T) store.Locker { return l.fresh(t) })
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
