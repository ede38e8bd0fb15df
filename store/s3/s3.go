// Package s3 keeps nestbot's artifacts in an S3 bucket: saved plans (what
// `/nest apply` and `nestbot apply --plan` read back) and the audit log,
// one JSON object per apply. It implements store.Artifacts.
//
//	client := s3.NewClient(cfg, "", false)   // cfg from config.LoadDefaultConfig
//	a, err := s3.New(ctx, s3.Options{Bucket: "ducksnest-nestbot", Prefix: "nestbot/", KMSKeyID: keyARN, Client: client})
//
// Objects, under Prefix:
//
//	plans/<key>.json                               one saved plan (reconcile.SavedPlan's JSON)
//	audit/<started, RFC 3339 UTC, ns>-<revision>.json   one AuditRecord per apply
//
// Audit names start with the apply's start time at a fixed width, so
// S3's listing order (by key) is the order of the applies. With KMSKeyID
// set every object is written with SSE-KMS under that key.
package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ducksnest/nestbot/internal/awsbody"
	"github.com/ducksnest/nestbot/store"
)

// Options configure a Store.
type Options struct {
	// Bucket is the bucket's name.
	Bucket string
	// Prefix is put before every object's name ("nestbot/" keeps them
	// in a folder of a shared bucket); it may be empty.
	Prefix string
	// KMSKeyID, when set, has every object written with SSE-KMS under
	// this key (its id, ARN or alias ARN).
	KMSKeyID string
	// Client reaches S3; NewClient builds one from an aws.Config.
	Client *awss3.Client
	// Now is the store's clock (nil: time.Now): an audit record without a
	// start time is filed under its time.
	Now func() time.Time
}

// Store holds artifacts in one bucket. It satisfies store.Artifacts; its
// methods are safe for concurrent use.
type Store struct {
	o Options
	// pageSize bounds one listing of the audit log (0: S3's own, 1000).
	pageSize int32
}

var _ store.Artifacts = (*Store)(nil)

// NewClient builds an S3 client from cfg. A non-empty endpoint overrides
// the service's; pathStyle addresses buckets in the path rather than the
// host name, as S3-compatible servers (MinIO, s3rver, the lab) want.
func NewClient(cfg aws.Config, endpoint string, pathStyle bool) *awss3.Client {
	return awss3.NewFromConfig(cfg, func(o *awss3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = pathStyle
		// See awsbody: a nearby endpoint can otherwise cut a response short.
		o.APIOptions = append(o.APIOptions, awsbody.WithoutWriterTo)
	})
}

// New returns the store in o.Bucket. It checks nothing remotely: the first
// call says so when the bucket is missing or out of reach.
func New(ctx context.Context, o Options) (*Store, error) {
	if o.Bucket == "" {
		return nil, errors.New("s3: no bucket named: set the artifact bucket (--s3-bucket)")
	}
	if o.Client == nil {
		return nil, fmt.Errorf("s3: bucket %s: no client", o.Bucket)
	}
	if o.Prefix != "" && !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Store{o: o}, nil
}

// PutPlan stores a saved plan under key (for example "ducksnest/pr-12").
func (s *Store) PutPlan(ctx context.Context, key string, data []byte) error {
	name, err := s.planName(key)
	if err != nil {
		return err
	}
	if err := s.put(ctx, name, data); err != nil {
		return fmt.Errorf("s3: put plan %s: %w", key, err)
	}
	return nil
}

// GetPlan returns the plan stored under key, or store.ErrNotFound.
func (s *Store) GetPlan(ctx context.Context, key string) ([]byte, error) {
	name, err := s.planName(key)
	if err != nil {
		return nil, err
	}
	data, err := s.get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("s3: get plan %s: %w", key, err)
	}
	return data, nil
}

// Audit writes rec as an object of its own. A record without a start time
// is filed under the time it is written.
func (s *Store) Audit(ctx context.Context, rec store.AuditRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("s3: audit %s: %w", rec.Revision, err)
	}
	started := rec.Started
	if started.IsZero() {
		started = s.o.Now()
	}
	name := s.o.Prefix + auditDir + started.UTC().Format(auditTime) + "-" + safeName(rec.Revision) + ".json"
	if err := s.put(ctx, name, data); err != nil {
		return fmt.Errorf("s3: audit %s: %w", rec.Revision, err)
	}
	return nil
}

// AuditLog returns every audit record, oldest first. It lists the audit
// objects page by page and reads them a few at a time.
func (s *Store) AuditLog(ctx context.Context) ([]store.AuditRecord, error) {
	var names []string
	in := &awss3.ListObjectsV2Input{Bucket: aws.String(s.o.Bucket), Prefix: aws.String(s.o.Prefix + auditDir)}
	if s.pageSize > 0 {
		in.MaxKeys = aws.Int32(s.pageSize)
	}
	pages := awss3.NewListObjectsV2Paginator(s.o.Client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3: audit log: list s3://%s/%s%s: %w", s.o.Bucket, s.o.Prefix, auditDir, err)
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); strings.HasSuffix(k, ".json") {
				names = append(names, k)
			}
		}
	}

	recs := make([]store.AuditRecord, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, readers)
	var wg sync.WaitGroup
	for i, name := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			data, err := s.get(ctx, name)
			if err == nil {
				err = json.Unmarshal(data, &recs[i])
			}
			if err != nil {
				errs[i] = fmt.Errorf("s3: audit log: s3://%s/%s: %w", s.o.Bucket, name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return recs, nil
}

const (
	plansDir = "plans/"
	auditDir = "audit/"
	// auditTime is RFC 3339 in UTC at a fixed width, so that names sort
	// as times do.
	auditTime = "2006-01-02T15:04:05.000000000Z"
	// readers bounds the audit objects AuditLog reads at once.
	readers = 8
	// maxPlanKey bounds a plan's key (S3 names hold 1024 bytes).
	maxPlanKey = 512
)

// planName is the object holding key's plan; it refuses keys that would
// leave the plans folder or could not be told apart.
func (s *Store) planName(key string) (string, error) {
	bad := key == "" || len(key) > maxPlanKey || !utf8.ValidString(key) ||
		strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || strings.Contains(key, "//")
	for _, seg := range strings.Split(key, "/") {
		bad = bad || seg == "." || seg == ".."
	}
	for _, r := range key {
		bad = bad || unicode.IsControl(r)
	}
	if bad {
		return "", fmt.Errorf("s3: plan key %.60q: use 1 to %d bytes of printable UTF-8, folders split by single '/', no '.' or '..' (for example \"ducksnest/pr-12\")", key, maxPlanKey)
	}
	return s.o.Prefix + plansDir + key + ".json", nil
}

// safeName keeps a revision readable in an object name.
func safeName(rev string) string {
	if rev == "" {
		return "unknown"
	}
	var b strings.Builder
	for _, r := range rev {
		if r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '.' || r == '_') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 80 {
			break
		}
	}
	return b.String()
}

func (s *Store) put(ctx context.Context, name string, data []byte) error {
	in := &awss3.PutObjectInput{
		Bucket:        aws.String(s.o.Bucket),
		Key:           aws.String(name),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/json"),
	}
	if s.o.KMSKeyID != "" {
		in.ServerSideEncryption = types.ServerSideEncryptionAwsKms
		in.SSEKMSKeyId = aws.String(s.o.KMSKeyID)
	}
	if _, err := s.o.Client.PutObject(ctx, in); err != nil {
		return fmt.Errorf("write s3://%s/%s: %w", s.o.Bucket, name, err)
	}
	return nil
}

func (s *Store) get(ctx context.Context, name string) ([]byte, error) {
	out, err := s.o.Client.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(name)})
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", s.o.Bucket, name, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", s.o.Bucket, name, err)
	}
	return data, nil
}
