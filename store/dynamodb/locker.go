package dynamodb

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ducksnest/nestbot/store"
)

// Attributes of lock and fenced-key items.
const (
	attrAcquired = "acquired"
	attrValues   = "values"
	attrLock     = "lock"

	lockSK   = "lock"
	fencedSK = "fenced"
)

// maxFenced bounds one value written by Fenced: the values of a lock share
// its item, which holds at most 400 KB.
const maxFenced = 64 << 10

// acquireTries bounds how often Acquire and Break start over when the lock
// changed between reading and writing it.
const acquireTries = 5

func lockKey(name string) map[string]types.AttributeValue { return key("lock#"+name, lockSK) }
func fencedKey(k string) map[string]types.AttributeValue  { return key("fenced#"+k, fencedSK) }

// Acquire takes lock name for owner until now+ttl, with a token one above
// the lock's last; a *store.LockedError when another owner holds it.
func (s *Store) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (store.Lease, error) {
	if owner == "" {
		return store.Lease{}, fmt.Errorf("dynamodb: acquire %s: no owner given", name)
	}
	for range acquireTries {
		now := s.now()
		update := "SET #owner = :owner, #acquired = :now, #expires = :expires, #values = if_not_exists(#values, :empty) ADD #token :one"
		cond := "attribute_not_exists(#owner) OR #expires <= :now OR #owner = :owner"
		out, err := s.client.UpdateItem(ctx, &ddb.UpdateItemInput{
			TableName:                aws.String(s.table),
			Key:                      lockKey(name),
			UpdateExpression:         aws.String(update),
			ConditionExpression:      aws.String(cond),
			ExpressionAttributeNames: names(update, cond),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":owner": vS(owner), ":now": vN(nanos(now)), ":expires": vN(nanos(now.Add(ttl))),
				":empty": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}}, ":one": vN(1),
			},
			ReturnValues: types.ReturnValueAllNew,
		})
		if err == nil {
			l, _, err := decodeLease(out.Attributes)
			if err != nil {
				return store.Lease{}, fmt.Errorf("dynamodb: acquire %s: %w", name, err)
			}
			return l, nil
		}
		if !conditionFailed(err) {
			return store.Lease{}, fmt.Errorf("dynamodb: acquire %s in table %s: %w", name, s.table, err)
		}
		h, ok, err := s.Holder(ctx, name)
		if err != nil {
			return store.Lease{}, fmt.Errorf("dynamodb: acquire %s: %w", name, err)
		}
		if ok {
			return store.Lease{}, &store.LockedError{Lease: h}
		}
		// Released or expired between the write and the read: try again.
	}
	return store.Lease{}, fmt.Errorf("dynamodb: acquire %s: the lock changed hands %d times while taking it; try again", name, acquireTries)
}

// heldBy is the condition that l is the lock's lease and has not expired.
const heldBy = "#token = :token AND #owner = :owner AND #expires > :now"

// Renew extends l to now+ttl; store.ErrLost when l has expired, was
// released or broken, or another lease took the lock.
func (s *Store) Renew(ctx context.Context, l store.Lease, ttl time.Duration) (store.Lease, error) {
	now := s.now()
	expires := now.Add(ttl)
	update := "SET #expires = :expires"
	err := s.updateIf(ctx, lockKey(l.Name), update, heldBy, map[string]types.AttributeValue{
		":token": vU(l.Token), ":owner": vS(l.Owner), ":now": vN(nanos(now)), ":expires": vN(nanos(expires)),
	})
	if conditionFailed(err) {
		return store.Lease{}, fmt.Errorf("dynamodb: renew %s (token %d): %w", l.Name, l.Token, store.ErrLost)
	}
	if err != nil {
		return store.Lease{}, fmt.Errorf("dynamodb: renew %s: %w", l.Name, err)
	}
	l.Expires = time.Unix(0, nanos(expires)).UTC()
	return l, nil
}

// Release lets go of l; a lease already lost is not an error.
func (s *Store) Release(ctx context.Context, l store.Lease) error {
	err := s.free(ctx, l)
	if err != nil && !conditionFailed(err) {
		return fmt.Errorf("dynamodb: release %s: %w", l.Name, err)
	}
	return nil
}

// free clears l from its lock, keeping the token (the next lease counts
// on from it) and the fenced values.
func (s *Store) free(ctx context.Context, l store.Lease) error {
	update := "REMOVE #owner, #acquired, #expires"
	cond := "#token = :token AND #owner = :owner"
	return s.updateIf(ctx, lockKey(l.Name), update, cond, map[string]types.AttributeValue{":token": vU(l.Token), ":owner": vS(l.Owner)})
}

// Break releases the lease name has and returns it; ok is false when
// there was none unexpired.
func (s *Store) Break(ctx context.Context, name string) (store.Lease, bool, error) {
	for range acquireTries {
		l, held, err := s.lease(ctx, name)
		if err != nil {
			return store.Lease{}, false, fmt.Errorf("dynamodb: break %s: %w", name, err)
		}
		if !held {
			return store.Lease{}, false, nil
		}
		err = s.free(ctx, l)
		if conditionFailed(err) {
			continue // taken or released meanwhile
		}
		if err != nil {
			return store.Lease{}, false, fmt.Errorf("dynamodb: break %s: %w", name, err)
		}
		return l, l.Expires.After(s.now()), nil
	}
	return store.Lease{}, false, fmt.Errorf("dynamodb: break %s: the lock changed hands %d times while breaking it; try again", name, acquireTries)
}

// Holder returns the unexpired lease of name, if any.
func (s *Store) Holder(ctx context.Context, name string) (store.Lease, bool, error) {
	l, held, err := s.lease(ctx, name)
	if err != nil {
		return store.Lease{}, false, fmt.Errorf("dynamodb: holder of %s: %w", name, err)
	}
	if !held || !l.Expires.After(s.now()) {
		return store.Lease{}, false, nil
	}
	return l, true, nil
}

// lease reads the lease recorded on name, expired or not.
func (s *Store) lease(ctx context.Context, name string) (store.Lease, bool, error) {
	out, err := s.client.GetItem(ctx, &ddb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            lockKey(name),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return store.Lease{}, false, fmt.Errorf("read table %s: %w", s.table, err)
	}
	if out.Item == nil {
		return store.Lease{}, false, nil
	}
	return decodeLease(out.Item)
}

func decodeLease(m map[string]types.AttributeValue) (store.Lease, bool, error) {
	it := item{m: m}
	if _, held := m[attrOwner]; !held {
		return store.Lease{}, false, nil
	}
	l := store.Lease{
		Name:     strings.TrimPrefix(it.str(attrPK), "lock#"),
		Owner:    it.str(attrOwner),
		Token:    it.unum(attrToken),
		Acquired: it.time(attrAcquired),
		Expires:  it.time(attrExpires),
	}
	if it.err != nil {
		return store.Lease{}, false, fmt.Errorf("lock %s: %w", l.Name, it.err)
	}
	return l, true, nil
}

// Fenced stores value under k while l is its lock's current lease. The
// value lives in the lock's own item, so the check of the lease and the
// write are one conditional write; a small item (fenced#<k>) records
// which lock's item holds k, for Get. A key belongs to the first lock it
// was written under.
func (s *Store) Fenced(ctx context.Context, l store.Lease, k string, value []byte) error {
	if len(value) > maxFenced {
		return fmt.Errorf("dynamodb: fenced write %s: %d bytes, at most %d fit (keep large data in the artifact store)", k, len(value), maxFenced)
	}
	lock, err := s.fencedLock(ctx, k)
	if err != nil {
		return fmt.Errorf("dynamodb: fenced write %s: %w", k, err)
	}
	switch {
	case lock == "":
		cond := "attribute_not_exists(#pk) OR #lock = :lock"
		item := fencedKey(k)
		item[attrLock] = vS(l.Name)
		_, err := s.client.PutItem(ctx, &ddb.PutItemInput{
			TableName:                 aws.String(s.table),
			Item:                      item,
			ConditionExpression:       aws.String(cond),
			ExpressionAttributeNames:  names(cond),
			ExpressionAttributeValues: map[string]types.AttributeValue{":lock": vS(l.Name)},
		})
		if conditionFailed(err) {
			return fmt.Errorf("dynamodb: fenced write %s under lock %s: the key was just bound to another lock; write it under that one", k, l.Name)
		}
		if err != nil {
			return fmt.Errorf("dynamodb: fenced write %s: %w", k, err)
		}
	case lock != l.Name:
		return fmt.Errorf("dynamodb: fenced write %s under lock %s: the key belongs to lock %s; write it under that one", k, l.Name, lock)
	}

	update := "SET #values.#k = :value"
	nm := names(update, heldBy)
	nm["#k"] = k
	_, err = s.client.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                aws.String(s.table),
		Key:                      lockKey(l.Name),
		UpdateExpression:         aws.String(update),
		ConditionExpression:      aws.String(heldBy),
		ExpressionAttributeNames: nm,
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":token": vU(l.Token), ":owner": vS(l.Owner), ":now": vN(nanos(s.now())), ":value": vB(value),
		},
	})
	if conditionFailed(err) {
		return fmt.Errorf("dynamodb: fenced write %s by %s (token %d of %s): %w", k, l.Owner, l.Token, l.Name, store.ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("dynamodb: fenced write %s under lock %s: %w", k, l.Name, err)
	}
	return nil
}

// fencedLock is the lock whose item holds k ("" when k was never written).
func (s *Store) fencedLock(ctx context.Context, k string) (string, error) {
	out, err := s.client.GetItem(ctx, &ddb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            fencedKey(k),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return "", fmt.Errorf("read table %s: %w", s.table, err)
	}
	if out.Item == nil {
		return "", nil
	}
	it := item{m: out.Item}
	lock := it.str(attrLock)
	return lock, it.err
}

// Get returns what Fenced stored under k, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, k string) ([]byte, error) {
	lock, err := s.fencedLock(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("dynamodb: get %s: %w", k, err)
	}
	if lock == "" {
		return nil, fmt.Errorf("dynamodb: get %s: %w", k, store.ErrNotFound)
	}
	proj := "#values.#k"
	nm := names(proj)
	nm["#k"] = k
	out, err := s.client.GetItem(ctx, &ddb.GetItemInput{
		TableName:                aws.String(s.table),
		Key:                      lockKey(lock),
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String(proj),
		ExpressionAttributeNames: nm,
	})
	if err != nil {
		return nil, fmt.Errorf("dynamodb: get %s: read table %s: %w", k, s.table, err)
	}
	values, _ := out.Item[attrValues].(*types.AttributeValueMemberM)
	if values == nil {
		return nil, fmt.Errorf("dynamodb: get %s: %w", k, store.ErrNotFound)
	}
	v, ok := values.Value[k].(*types.AttributeValueMemberB)
	if !ok {
		return nil, fmt.Errorf("dynamodb: get %s: %w", k, store.ErrNotFound)
	}
	return v.Value, nil
}
