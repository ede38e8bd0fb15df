// Package dynamodb keeps nestbot's shared state in one DynamoDB table, so
// that any number of `nestbot serve` replicas share one job queue (which
// also de-duplicates deliveries) and one set of locks. It implements
// store.Queue and store.Locker with single-item conditional writes only:
// no transactions, so it runs unchanged on DynamoDB and on dynalite.
//
//	client := dynamodb.NewClient(cfg, "")           // cfg from config.LoadDefaultConfig
//	s, err := dynamodb.New(ctx, dynamodb.Options{Table: "nestbot", Client: client})
//	err = s.CreateTable(ctx)                        // once, at setup
//	err = s.Enqueue(ctx, job)                       // store.ErrDuplicate for a delivery seen before
//
// # The table
//
// One table, a string partition key pk and a string sort key sk, billed on
// demand, with one global secondary index:
//
//	item            pk               sk      attributes
//	job             job#<id>         job     state (queued|claimed|done), event, jobkey, payload, gzip,
//	                                         received, attempt, token, owner, expires, result, finished;
//	                                         qpk, qsk while queued or claimed; expire_at once done
//	key hold        key#<Key>        key     holder (<id>#<token>), expires, expire_at
//	lock            lock#<name>      lock    token, owner, acquired, expires (owner absent when free),
//	                                         values (map: key -> bytes written by Fenced)
//	fenced key      fenced#<key>     fenced  lock (the lock whose item holds the value)
//
//	index "queue"   qpk = "queue"    qsk = <received, 20 digits of ns>#<id>
//
// The index holds only the jobs queued or claimed (done jobs drop qpk), so
// Claim reads it oldest first and Depth counts it. Times are Unix
// nanoseconds; leases are judged by the clock of the replica that reads
// them, so replicas' clocks must agree to well within a lease.
//
// # Expiry
//
// A done job is remembered for the retention (store.DeliveryRetention,
// longer than GitHub's redelivery window), then forgotten: from then on
// Enqueue takes its id as new, and its item carries expire_at, the Unix
// time in seconds after which DynamoDB's Time to Live deletes it. A key
// hold that a dead worker left carries one too. Queued and claimed jobs,
// locks and fenced values never expire. CreateTable turns Time to Live on
// for expire_at; for a table made otherwise, turn it on once:
//
//	aws dynamodb update-time-to-live --table-name T \
//	    --time-to-live-specification Enabled=true,AttributeName=expire_at
//
// DynamoDB deletes an expired item some time after expire_at (within days),
// and without Time to Live not at all; nestbot judges expiry by the
// finished time itself, so either way only the space is kept longer.
//
// Every change that must be atomic touches one item under a condition:
// Enqueue creates the job only when its id is new (or done, failed);
// Claim takes the job's Key hold, then the job; Fenced writes its value
// into the lock's own item under the condition that the lease is current.
package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/ducksnest/nestbot/internal/awsbody"
	"github.com/ducksnest/nestbot/store"
)

// Options configure a Store.
type Options struct {
	// Table is the table's name.
	Table string
	// Client reaches DynamoDB; NewClient builds one from an aws.Config.
	Client *ddb.Client
	// Retention is how long a done delivery is remembered (0:
	// store.DeliveryRetention).
	Retention time.Duration
	// Now is the store's clock (nil: time.Now): the queue's claims and the
	// locks' leases are judged by it, so tests move it instead of waiting.
	Now func() time.Time
}

// Store is the shared state in one DynamoDB table. It satisfies
// store.Queue and store.Locker; its methods are safe for concurrent use.
type Store struct {
	table     string
	client    *ddb.Client
	now       func() time.Time
	retention time.Duration
}

var (
	_ store.Queue  = (*Store)(nil)
	_ store.Locker = (*Store)(nil)
)

// NewClient builds a DynamoDB client from cfg. A non-empty endpoint
// overrides the service's (a local DynamoDB, dynalite).
func NewClient(cfg aws.Config, endpoint string) *ddb.Client {
	return ddb.NewFromConfig(cfg, func(o *ddb.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		// See awsbody: a nearby endpoint can otherwise cut a response short.
		o.APIOptions = append(o.APIOptions, awsbody.WithoutWriterTo)
	})
}

// New returns the store kept in o.Table. It checks nothing remotely:
// CreateTable creates the table, and the first call that needs it says so
// when it is missing.
func New(ctx context.Context, o Options) (*Store, error) {
	if o.Table == "" {
		return nil, errors.New("dynamodb: no table named: set the table (--dynamodb-table) to the one CreateTable made")
	}
	if o.Client == nil {
		return nil, fmt.Errorf("dynamodb: table %s: no client", o.Table)
	}
	s := &Store{table: o.Table, client: o.Client, now: o.Now, retention: o.Retention}
	if s.now == nil {
		s.now = time.Now
	}
	if s.retention <= 0 {
		s.retention = store.DeliveryRetention
	}
	return s, nil
}

// Table is the name of the table the store keeps its state in.
func (s *Store) Table() string { return s.table }

// Names of the table's key attributes and its index.
const (
	attrPK     = "pk"
	attrSK     = "sk"
	attrQPK    = "qpk"
	attrQSK    = "qsk"
	queueIndex = "queue"
	queuePK    = "queue"
	// attrExpireAt is the table's Time to Live attribute: Unix seconds.
	attrExpireAt = "expire_at"
)

// CreateTable creates the table and its index (on-demand billing) and
// waits, at most two minutes, until it is active. A table that already
// exists is left as it is.
func (s *Store) CreateTable(ctx context.Context) error {
	str := types.ScalarAttributeTypeS
	_, err := s.client.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:   aws.String(s.table),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: str},
			{AttributeName: aws.String(attrSK), AttributeType: str},
			{AttributeName: aws.String(attrQPK), AttributeType: str},
			{AttributeName: aws.String(attrQSK), AttributeType: str},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName: aws.String(queueIndex),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(attrQPK), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(attrQSK), KeyType: types.KeyTypeRange},
			},
			Projection: &types.Projection{
				ProjectionType:   types.ProjectionTypeInclude,
				NonKeyAttributes: []string{attrState, attrJobKey, attrExpires, attrToken},
			},
		}},
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dynamodb: create table %s: %w", s.table, err)
	}
	w := ddb.NewTableExistsWaiter(s.client, func(o *ddb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
	})
	if err := w.Wait(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.table)}, 2*time.Minute); err != nil {
		return fmt.Errorf("dynamodb: wait for table %s to be active: %w", s.table, err)
	}
	return s.enableTTL(ctx)
}

// enableTTL turns on Time to Live for expire_at, unless it is on already.
// An endpoint that has no Time to Live (dynalite answers
// UnknownOperationException) is left as it is: expiry is judged by nestbot
// itself, and only the deleting of forgotten items is lost.
func (s *Store) enableTTL(ctx context.Context) error {
	d, err := s.client.DescribeTimeToLive(ctx, &ddb.DescribeTimeToLiveInput{TableName: aws.String(s.table)})
	if err != nil {
		return fmt.Errorf("dynamodb: describe Time to Live of table %s: %w", s.table, err)
	}
	if t := d.TimeToLiveDescription; t != nil && aws.ToString(t.AttributeName) == attrExpireAt &&
		(t.TimeToLiveStatus == types.TimeToLiveStatusEnabled || t.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
		return nil
	}
	_, err = s.client.UpdateTimeToLive(ctx, &ddb.UpdateTimeToLiveInput{
		TableName: aws.String(s.table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(attrExpireAt), Enabled: aws.Bool(true),
		},
	})
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "UnknownOperationException" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dynamodb: turn on Time to Live (attribute %s) for table %s: %w", attrExpireAt, s.table, err)
	}
	return nil
}

// Attribute values and readers.

func vS(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func vN(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func vU(v uint64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatUint(v, 10)}
}
func vB(v []byte) types.AttributeValue { return &types.AttributeValueMemberB{Value: v} }

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrPK: vS(pk), attrSK: vS(sk)}
}

// updateIf applies update to the item at k if cond holds (else an error
// conditionFailed reports); values are the expressions' values, their
// names those the expressions use.
func (s *Store) updateIf(ctx context.Context, k map[string]types.AttributeValue, update, cond string, values map[string]types.AttributeValue) error {
	_, err := s.client.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       k,
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  names(update, cond),
		ExpressionAttributeValues: values,
	})
	return err
}

// item reads attributes of one item, remembering the first one that is
// missing or of the wrong type.
type item struct {
	m   map[string]types.AttributeValue
	err error
}

func (it *item) str(name string) string {
	v, ok := it.m[name].(*types.AttributeValueMemberS)
	if !ok {
		it.fail(name, "a string")
		return ""
	}
	return v.Value
}

func (it *item) num(name string) int64 {
	v, ok := it.m[name].(*types.AttributeValueMemberN)
	if !ok {
		it.fail(name, "a number")
		return 0
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil {
		it.fail(name, "an integer")
	}
	return n
}

func (it *item) optNum(name string) int64 {
	if _, ok := it.m[name]; !ok {
		return 0
	}
	return it.num(name)
}

func (it *item) unum(name string) uint64 {
	v, ok := it.m[name].(*types.AttributeValueMemberN)
	if !ok {
		it.fail(name, "a number")
		return 0
	}
	n, err := strconv.ParseUint(v.Value, 10, 64)
	if err != nil {
		it.fail(name, "an unsigned integer")
	}
	return n
}

func (it *item) bytes(name string) []byte {
	if _, ok := it.m[name]; !ok {
		return nil
	}
	v, ok := it.m[name].(*types.AttributeValueMemberB)
	if !ok {
		it.fail(name, "binary")
		return nil
	}
	return v.Value
}

func (it *item) bool(name string) bool {
	v, ok := it.m[name].(*types.AttributeValueMemberBOOL)
	return ok && v.Value
}

func (it *item) time(name string) time.Time {
	n := it.optNum(name)
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (it *item) fail(name, want string) {
	if it.err == nil {
		it.err = fmt.Errorf("attribute %s is not %s (%T): the table holds an item nestbot did not write", name, want, it.m[name])
	}
}

// conditionFailed reports whether err is a failed condition of a write.
func conditionFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}

// nanos is t as the table stores it.
func nanos(t time.Time) int64 { return t.UnixNano() }

// expireAt is the Time to Live value of an item to keep until t: Unix
// seconds, rounded up.
func expireAt(t time.Time) int64 {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return sec
}
