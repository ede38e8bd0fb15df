package dynamodb

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ducksnest/nestbot/store"
)

// Attributes of job and key-hold items.
const (
	attrState    = "state"
	attrEvent    = "event"
	attrJobKey   = "jobkey"
	attrPayload  = "payload"
	attrGzip     = "gzip"
	attrReceived = "received"
	attrAttempt  = "attempt"
	attrToken    = "token"
	attrOwner    = "owner"
	attrExpires  = "expires"
	attrResult   = "result"
	attrFinished = "finished"
	attrHolder   = "holder"

	stateQueued  = "queued"
	stateClaimed = "claimed"
	stateDone    = "done"
)

const (
	// gzipAbove is the payload size past which it is stored compressed.
	gzipAbove = 8 << 10
	// maxPayload bounds a stored payload: a DynamoDB item holds at most
	// 400 KB, and the job's other attributes need a little.
	maxPayload = 390 << 10
	// claimPage is how many queued jobs Claim reads at a time.
	claimPage = 100
)

func jobPK(id string) string  { return "job#" + id }
func keyPK(key string) string { return "key#" + key }

const (
	jobSK = "job"
	keySK = "key"
)

// queueSK orders the index by when a job was received, then by id.
func queueSK(received time.Time, id string) string {
	return fmt.Sprintf("%020d#%s", nanos(received), id)
}

func holderOf(id string, token uint64) string { return fmt.Sprintf("%s#%d", id, token) }

var placeholder = regexp.MustCompile(`#\w+`)

// names maps every #name in exprs to the attribute name (placeholders here
// are always '#' and the attribute's own name).
func names(exprs ...string) map[string]string {
	m := map[string]string{}
	for _, e := range exprs {
		for _, p := range placeholder.FindAllString(e, -1) {
			m[p] = p[1:]
		}
	}
	return m
}

// Enqueue stores j, or fails with store.ErrDuplicate when its id is queued,
// claimed or done ok within the retention. A zero j.Received is taken as now.
func (s *Store) Enqueue(ctx context.Context, j store.Job) error {
	if err := checkJob(j); err != nil {
		return err
	}
	now := s.now()
	if j.Received.IsZero() {
		j.Received = now
	}
	payload, zipped, err := packPayload(j.Payload)
	if err != nil {
		return fmt.Errorf("dynamodb: enqueue %s: %w", j.ID, err)
	}
	values := map[string]types.AttributeValue{
		":queued":    vS(stateQueued),
		":done":      vS(stateDone),
		":failed":    vS(string(store.ResultFailed)),
		":event":     vS(j.Event),
		":jobkey":    vS(j.Key),
		":gzip":      &types.AttributeValueMemberBOOL{Value: zipped},
		":received":  vN(nanos(j.Received)),
		":zero":      vN(0),
		":qpk":       vS(queuePK),
		":qsk":       vS(queueSK(j.Received, j.ID)),
		":forgotten": vN(nanos(now.Add(-s.retention))),
	}
	set := "#state = :queued, #event = :event, #jobkey = :jobkey, #gzip = :gzip, #received = :received, " +
		"#attempt = :zero, #token = if_not_exists(#token, :zero), #qpk = :qpk, #qsk = :qsk"
	remove := "#owner, #expires, #result, #finished, #expire_at"
	if len(payload) > 0 {
		set += ", #payload = :payload"
		values[":payload"] = vB(payload)
	} else {
		remove += ", #payload"
	}
	update := "SET " + set + " REMOVE " + remove
	// A job done before the retention is forgotten, whether or not Time
	// to Live has deleted its item yet.
	cond := "attribute_not_exists(#pk) OR (#state = :done AND (#result = :failed OR #finished <= :forgotten))"
	err = s.updateIf(ctx, key(jobPK(j.ID), jobSK), update, cond, values)
	if conditionFailed(err) {
		return fmt.Errorf("dynamodb: enqueue %s: %w", j.ID, store.ErrDuplicate)
	}
	if err != nil {
		return fmt.Errorf("dynamodb: enqueue %s in table %s: %w", j.ID, s.table, err)
	}
	return nil
}

// Bounds of a job's id and Key, as the bbolt store has them (a DynamoDB
// key holds at most 2048 bytes).
const (
	maxJobID  = 256
	maxJobKey = 1024
)

func checkJob(j store.Job) error {
	switch {
	case j.ID == "" || len(j.ID) > maxJobID || !utf8.ValidString(j.ID):
		return fmt.Errorf("dynamodb: enqueue: job id %.40q must be 1 to %d bytes of UTF-8", j.ID, maxJobID)
	case j.Event == "":
		return fmt.Errorf("dynamodb: enqueue %s: the job has no event", j.ID)
	case j.Key == "" || len(j.Key) > maxJobKey || !utf8.ValidString(j.Key):
		return fmt.Errorf("dynamodb: enqueue %s: job key %.40q must be 1 to %d bytes of UTF-8", j.ID, j.Key, maxJobKey)
	}
	return nil
}

// candidate is a job as the queue index shows it.
type candidate struct {
	id      string
	state   string
	key     string
	expires int64
	token   uint64
}

// Claim takes the oldest queued job whose Key no live claim holds: first
// the Key's hold, then the job, each by a conditional write, so two
// replicas never both succeed. It reads the queue index oldest first; the
// index may show a write late, which can only delay a claim, never
// double it, since the writes check the items themselves.
func (s *Store) Claim(ctx context.Context, owner string, lease time.Duration) (*store.Claim, error) {
	now := s.now()
	busy := map[string]bool{} // keys held by a live claim, or by an older job
	var start map[string]types.AttributeValue
	for {
		kc := "#qpk = :qpk"
		out, err := s.client.Query(ctx, &ddb.QueryInput{
			TableName:                 aws.String(s.table),
			IndexName:                 aws.String(queueIndex),
			KeyConditionExpression:    aws.String(kc),
			ExpressionAttributeNames:  names(kc),
			ExpressionAttributeValues: map[string]types.AttributeValue{":qpk": vS(queuePK)},
			Limit:                     aws.Int32(claimPage),
			ExclusiveStartKey:         start,
		})
		if err != nil {
			return nil, fmt.Errorf("dynamodb: claim: read the queue in table %s: %w", s.table, err)
		}
		for _, m := range out.Items {
			it := item{m: m}
			c := candidate{
				id:      strings.TrimPrefix(it.str(attrPK), "job#"),
				state:   it.str(attrState),
				key:     it.str(attrJobKey),
				expires: it.optNum(attrExpires),
				token:   it.unum(attrToken),
			}
			if it.err != nil {
				return nil, fmt.Errorf("dynamodb: claim: queued job %s: %w", c.id, it.err)
			}
			if busy[c.key] {
				continue
			}
			if c.state == stateClaimed && c.expires > nanos(now) {
				busy[c.key] = true
				continue
			}
			claim, err := s.claim(ctx, c, owner, now, lease)
			if err != nil {
				return nil, err
			}
			if claim != nil {
				return claim, nil
			}
			// Whoever won the key or the job, this key's turn is taken.
			busy[c.key] = true
		}
		if out.LastEvaluatedKey == nil {
			return nil, nil
		}
		start = out.LastEvaluatedKey
	}
}

// claim tries to take c for owner: (nil, nil) when another claim got there first.
func (s *Store) claim(ctx context.Context, c candidate, owner string, now time.Time, lease time.Duration) (*store.Claim, error) {
	token := c.token + 1
	expires := now.Add(lease)
	holder := holderOf(c.id, token)

	cond := "attribute_not_exists(#pk) OR #expires <= :now"
	_, err := s.client.PutItem(ctx, &ddb.PutItemInput{
		TableName: aws.String(s.table),
		Item: map[string]types.AttributeValue{
			attrPK: vS(keyPK(c.key)), attrSK: vS(keySK),
			attrHolder: vS(holder), attrExpires: vN(nanos(expires)),
			// A hold its worker never gave back goes once it is long expired.
			attrExpireAt: vN(expireAt(expires.Add(s.retention))),
		},
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  names(cond),
		ExpressionAttributeValues: map[string]types.AttributeValue{":now": vN(nanos(now))},
	})
	if conditionFailed(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dynamodb: claim %s: hold key %s: %w", c.id, c.key, err)
	}

	update := "SET #state = :claimed, #owner = :owner, #expires = :expires, #token = :token ADD #attempt :one"
	cond = "#token = :seen AND (#state = :queued OR (#state = :claimed AND #expires <= :now))"
	out, err := s.client.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                aws.String(s.table),
		Key:                      key(jobPK(c.id), jobSK),
		UpdateExpression:         aws.String(update),
		ConditionExpression:      aws.String(cond),
		ExpressionAttributeNames: names(update, cond),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":claimed": vS(stateClaimed), ":queued": vS(stateQueued),
			":owner": vS(owner), ":expires": vN(nanos(expires)), ":now": vN(nanos(now)),
			":token": vU(token), ":seen": vU(c.token), ":one": vN(1),
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	if err != nil {
		// Give the key back: the job went to someone else (or the index
		// showed it late), or the write failed.
		if rerr := s.releaseKey(ctx, c.key, holder); rerr != nil {
			return nil, fmt.Errorf("dynamodb: claim %s: give back key %s (it frees itself at %s): %w",
				c.id, c.key, expires.Format(time.RFC3339), rerr)
		}
		if conditionFailed(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("dynamodb: claim %s: %w", c.id, err)
	}
	j, err := decodeJob(out.Attributes)
	if err != nil {
		return nil, fmt.Errorf("dynamodb: claim %s: %w", c.id, err)
	}
	return &store.Claim{Job: j, Owner: owner, Token: token, Expires: time.Unix(0, nanos(expires)).UTC()}, nil
}

// releaseKey lets go of key when holder still holds it.
func (s *Store) releaseKey(ctx context.Context, key, holder string) error {
	cond := "#holder = :holder"
	_, err := s.client.DeleteItem(ctx, &ddb.DeleteItemInput{
		TableName:                 aws.String(s.table),
		Key:                       keyItem(key),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  names(cond),
		ExpressionAttributeValues: map[string]types.AttributeValue{":holder": vS(holder)},
	})
	if err != nil && !conditionFailed(err) {
		return err
	}
	return nil
}

func keyItem(k string) map[string]types.AttributeValue { return key(keyPK(k), keySK) }

// liveClaim is the condition that c is its job's claim and has not expired.
const liveClaim = "#token = :token AND #state = :claimed AND #expires > :now"

func liveClaimValues(c *store.Claim, now time.Time) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		":token": vU(c.Token), ":claimed": vS(stateClaimed), ":now": vN(nanos(now)),
	}
}

// Extend moves c's expiry (and its Key's hold) to now+lease; store.ErrLost
// when c has expired or another claim took the job.
func (s *Store) Extend(ctx context.Context, c *store.Claim, lease time.Duration) error {
	now := s.now()
	expires := now.Add(lease)
	update := "SET #expires = :expires"
	values := liveClaimValues(c, now)
	values[":expires"] = vN(nanos(expires))
	err := s.updateIf(ctx, key(jobPK(c.Job.ID), jobSK), update, liveClaim, values)
	if conditionFailed(err) {
		return fmt.Errorf("dynamodb: extend %s (claim %d): %w", c.Job.ID, c.Token, store.ErrLost)
	}
	if err != nil {
		return fmt.Errorf("dynamodb: extend %s: %w", c.Job.ID, err)
	}
	cond := "#holder = :holder"
	update = "SET #expires = :expires, #expire_at = :expire_at"
	err = s.updateIf(ctx, keyItem(c.Job.Key), update, cond, map[string]types.AttributeValue{
		":expires": vN(nanos(expires)), ":holder": vS(holderOf(c.Job.ID, c.Token)),
		":expire_at": vN(expireAt(expires.Add(s.retention))),
	})
	if conditionFailed(err) {
		return fmt.Errorf("dynamodb: extend %s: key %s is held by another claim: %w", c.Job.ID, c.Job.Key, store.ErrLost)
	}
	if err != nil {
		return fmt.Errorf("dynamodb: extend %s: hold key %s: %w", c.Job.ID, c.Job.Key, err)
	}
	c.Expires = time.Unix(0, nanos(expires)).UTC()
	return nil
}

// Done records c's job as processed and frees its Key; store.ErrLost when
// c has expired or another claim took the job.
func (s *Store) Done(ctx context.Context, c *store.Claim, result store.Result) error {
	if result != store.ResultOK && result != store.ResultFailed {
		return fmt.Errorf("dynamodb: done %s: result %q: use store.ResultOK or store.ResultFailed", c.Job.ID, result)
	}
	now := s.now()
	update := "SET #state = :done, #result = :result, #finished = :now, #expire_at = :expire_at " +
		"REMOVE #qpk, #qsk, #owner, #expires, #payload, #gzip"
	values := liveClaimValues(c, now)
	values[":done"], values[":result"] = vS(stateDone), vS(string(result))
	values[":expire_at"] = vN(expireAt(now.Add(s.retention)))
	err := s.updateIf(ctx, key(jobPK(c.Job.ID), jobSK), update, liveClaim, values)
	if conditionFailed(err) {
		// A retried write whose first attempt landed fails its condition:
		// the job is then done with this very claim.
		if ok, gerr := s.doneBy(ctx, c); gerr != nil || !ok {
			return fmt.Errorf("dynamodb: done %s (claim %d): %w", c.Job.ID, c.Token, store.ErrLost)
		}
	} else if err != nil {
		return fmt.Errorf("dynamodb: done %s: %w", c.Job.ID, err)
	}
	if err := s.releaseKey(ctx, c.Job.Key, holderOf(c.Job.ID, c.Token)); err != nil {
		// The job is done; its key frees itself when the hold expires.
		return fmt.Errorf("dynamodb: done %s: free key %s (it frees itself at %s): %w",
			c.Job.ID, c.Job.Key, c.Expires.Format(time.RFC3339), err)
	}
	return nil
}

// doneBy reports whether c's job is done with claim c.
func (s *Store) doneBy(ctx context.Context, c *store.Claim) (bool, error) {
	out, err := s.client.GetItem(ctx, &ddb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            key(jobPK(c.Job.ID), jobSK),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil || out.Item == nil {
		return false, err
	}
	it := item{m: out.Item}
	return it.str(attrState) == stateDone && it.unum(attrToken) == c.Token && it.err == nil, it.err
}

// Depth counts the jobs queued or claimed. It reads the queue index, which
// DynamoDB updates shortly after each write (typically well within a
// second): a gauge, not a sequence point. (dynalite updates it at once.)
func (s *Store) Depth(ctx context.Context) (int, error) {
	kc := "#qpk = :qpk"
	var (
		n     int
		start map[string]types.AttributeValue
	)
	for {
		out, err := s.client.Query(ctx, &ddb.QueryInput{
			TableName:                 aws.String(s.table),
			IndexName:                 aws.String(queueIndex),
			KeyConditionExpression:    aws.String(kc),
			ExpressionAttributeNames:  names(kc),
			ExpressionAttributeValues: map[string]types.AttributeValue{":qpk": vS(queuePK)},
			Select:                    types.SelectCount,
			ExclusiveStartKey:         start,
		})
		if err != nil {
			return 0, fmt.Errorf("dynamodb: depth of the queue in table %s: %w", s.table, err)
		}
		n += int(out.Count)
		if out.LastEvaluatedKey == nil {
			return n, nil
		}
		start = out.LastEvaluatedKey
	}
}

func decodeJob(m map[string]types.AttributeValue) (store.Job, error) {
	it := item{m: m}
	j := store.Job{
		ID:       strings.TrimPrefix(it.str(attrPK), "job#"),
		Event:    it.str(attrEvent),
		Key:      it.str(attrJobKey),
		Received: it.time(attrReceived),
		Attempt:  int(it.num(attrAttempt)),
	}
	payload, zipped := it.bytes(attrPayload), it.bool(attrGzip)
	if it.err != nil {
		return store.Job{}, fmt.Errorf("job %s: %w", j.ID, it.err)
	}
	var err error
	if j.Payload, err = unpackPayload(payload, zipped); err != nil {
		return store.Job{}, fmt.Errorf("job %s: payload: %w", j.ID, err)
	}
	return j, nil
}

// packPayload compresses a large payload; it fails when even that does
// not fit in an item.
func packPayload(p []byte) ([]byte, bool, error) {
	if len(p) <= gzipAbove {
		return p, false, nil
	}
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(p); err != nil {
		return nil, false, err
	}
	if err := w.Close(); err != nil {
		return nil, false, err
	}
	if b.Len() > maxPayload {
		return nil, false, fmt.Errorf("the payload is %d bytes, %d compressed: a DynamoDB item holds at most 400 KB (use the bbolt store for such deliveries)", len(p), b.Len())
	}
	return b.Bytes(), true, nil
}

func unpackPayload(p []byte, zipped bool) ([]byte, error) {
	if !zipped {
		return p, nil
	}
	r, err := gzip.NewReader(bytes.NewReader(p))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}
