package webhook_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/ducksnest/nestbot/gitops/webhook"
)

// BenchmarkIntakePush measures intake in process, without the network:
// signature, classification and a durable Enqueue (bbolt, fsynced, group
// commit) of GitHub's example push to the default branch, from 16 ×
// GOMAXPROCS concurrent callers, each request a new delivery.
func BenchmarkIntakePush(b *testing.B) {
	payload := examplePush(b)
	db := openDB(b)
	h := &webhook.Handler{Secrets: [][]byte{[]byte(secret)}, Queue: db.Queue()}
	sig := webhook.Sign([]byte(secret), payload)
	var n atomic.Int64
	b.SetBytes(int64(len(payload)))
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(payload))
			req.Header.Set(webhook.HeaderEvent, "push")
			req.Header.Set(webhook.HeaderDelivery, fmt.Sprintf("bench-%d", n.Add(1)))
			req.Header.Set(webhook.HeaderSignature, sig)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusAccepted {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
	})
}

// BenchmarkClassifyPush is Classify alone on GitHub's example push to the
// default branch (about 10 KB).
func BenchmarkClassifyPush(b *testing.B) {
	payload := examplePush(b)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, handled, err := webhook.Classify("push", payload); !handled || err != nil {
			b.Fatal(handled, err)
		}
	}
}

// examplePush is GitHub's first example push that nestbot handles: one to
// the default branch.
func examplePush(b *testing.B) []byte {
	for _, e := range examples(b, "push") {
		if _, handled, _ := webhook.Classify("push", e.Payload); handled {
			return e.Payload
		}
	}
	b.Fatal("no push to the default branch among the examples")
	return nil
}
