package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The contracts below are what the GitHub side of nestbot (webhook intake,
// workers, applies) needs from shared state. The bbolt file (DB) satisfies
// them for one process; store/dynamodb and store/s3 satisfy them for any
// number of replicas. store/storetest holds the conformance suite every
// implementation runs.

// Job is one unit of work: a webhook delivery, or a task nestbot gives
// itself (a drift check).
type Job struct {
	// ID is unique: the delivery id (X-GitHub-Delivery) for a webhook.
	ID string `json:"id"`
	// Event is the GitHub event name (X-GitHub-Event), or "drift".
	Event string `json:"event"`
	// Key serializes jobs: jobs with one Key never run at the same time
	// (for example "owner/repo#12" for a pull request, "owner/repo" for
	// the default branch).
	Key string `json:"key"`
	// Payload is the delivery's body, as received.
	Payload []byte `json:"payload"`
	// Received is when intake accepted it.
	Received time.Time `json:"received"`
	// Attempt counts claims of this job, 1 on the first.
	Attempt int `json:"attempt"`
}

// Claim is a job taken by one worker, until its lease expires.
type Claim struct {
	Job     Job
	Owner   string
	Token   uint64 // distinguishes this claim from earlier claims of the job
	Expires time.Time
}

// Result is how processing a job ended.
type Result string

const (
	ResultOK     Result = "ok"     // done: a later delivery with the same ID is a duplicate
	ResultFailed Result = "failed" // done, failed: a redelivery with the same ID runs again
)

// Queue is a durable job queue that also de-duplicates deliveries.
type Queue interface {
	// Enqueue stores j durably before returning. It returns an error
	// wrapping ErrDuplicate when a job with j.ID is queued, claimed, or
	// done with ResultOK; a job done with ResultFailed is enqueued again
	// (GitHub keeps the delivery id on a manual redelivery), its Attempt
	// starting at 1 again.
	Enqueue(ctx context.Context, j Job) error
	// Claim takes the oldest queued job whose Key is not held by a live
	// claim, for owner, until now+lease. A claim whose lease expired
	// (its worker died) counts as queued again, Attempt one higher.
	// It returns (nil, nil) when nothing can be claimed.
	Claim(ctx context.Context, owner string, lease time.Duration) (*Claim, error)
	// Extend moves c's expiry (and c.Expires) to now+lease; ErrLost when c
	// is no longer the job's live claim. A claim past its Expires is lost
	// even when nobody has taken the job yet.
	Extend(ctx context.Context, c *Claim, lease time.Duration) error
	// Done records the job as processed with result and frees its Key;
	// ErrLost when c is no longer the job's live claim (its work must not
	// be reported as done).
	Done(ctx context.Context, c *Claim, result Result) error
	// Depth is the number of jobs queued or claimed.
	Depth(ctx context.Context) (int, error)
}

// Lease is a held lock.
type Lease struct {
	Name     string    `json:"name"`
	Owner    string    `json:"owner"`
	Token    uint64    `json:"token"` // fencing token: grows with every Acquire of Name
	Acquired time.Time `json:"acquired"`
	Expires  time.Time `json:"expires"`
}

// Locker is a set of named locks held as leases with fencing tokens.
type Locker interface {
	// Acquire takes lock name for owner until now+ttl. When another owner
	// holds an unexpired lease it fails with a *LockedError. The lease's
	// Token is greater than that of every earlier lease of name.
	Acquire(ctx context.Context, name, owner string, ttl time.Duration) (Lease, error)
	// Renew extends l to now+ttl; ErrLost when l is no longer the lease
	// (a lease past its Expires is lost even when nobody took it over).
	Renew(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// Release lets go of l; releasing a lease that was lost is not an error.
	Release(ctx context.Context, l Lease) error
	// Break releases whatever unexpired lease name has (/nest unlock),
	// returning it (ok false when there was none). The next Acquire gets a
	// higher token.
	Break(ctx context.Context, name string) (l Lease, ok bool, err error)
	// Holder returns the unexpired lease of name, if any.
	Holder(ctx context.Context, name string) (l Lease, ok bool, err error)
	// Fenced stores value under key only while l is name's current lease
	// (same token, not expired, not broken); else it fails with ErrFenced
	// and stores nothing. A holder's late write after losing its lease is
	// refused this way. A key belongs to the first lock it was written
	// under (DynamoDB keeps it in that lock's item); values are small (at
	// most 64 KB).
	Fenced(ctx context.Context, l Lease, key string, value []byte) error
	// Get returns what Fenced stored under key (ErrNotFound when nothing).
	Get(ctx context.Context, key string) ([]byte, error)
}

// Artifacts holds saved plans and the audit log.
type Artifacts interface {
	// PutPlan stores a saved plan (the JSON of reconcile.SavedPlan) under key.
	PutPlan(ctx context.Context, key string, data []byte) error
	// GetPlan returns the plan stored under key, or ErrNotFound.
	GetPlan(ctx context.Context, key string) ([]byte, error)
	// Audit appends one record (one JSON object per apply).
	Audit(ctx context.Context, rec AuditRecord) error
	// AuditLog returns the records, oldest first.
	AuditLog(ctx context.Context) ([]AuditRecord, error)
}

// AuditRecord is one apply, as the audit log keeps it.
type AuditRecord struct {
	Fleet    string            `json:"fleet"`
	Revision string            `json:"revision"`
	Trigger  string            `json:"trigger"` // "push", "comment", "cli"
	Actor    string            `json:"actor,omitempty"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Result   string            `json:"result"` // "success", "failure"
	Counts   map[string]int    `json:"counts,omitempty"`
	Hosts    map[string]string `json:"hosts,omitempty"` // host -> revision after
	Error    string            `json:"error,omitempty"`
}

var (
	// ErrDuplicate: the delivery was already accepted.
	ErrDuplicate = errors.New("store: duplicate delivery")
	// ErrLost: the claim or lease is no longer held.
	ErrLost = errors.New("store: claim or lease lost")
	// ErrFenced: a write under a lease that is no longer current.
	ErrFenced = errors.New("store: write refused, the lease is no longer current")
	// ErrNotFound: nothing stored under the key.
	ErrNotFound = errors.New("store: not found")
)

// LockedError says who holds a lock.
type LockedError struct {
	Lease Lease
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("lock %s is held by %s since %s (until %s); /nest unlock releases it",
		e.Lease.Name, e.Lease.Owner, e.Lease.Acquired.UTC().Format(time.RFC3339), e.Lease.Expires.UTC().Format(time.RFC3339))
}
