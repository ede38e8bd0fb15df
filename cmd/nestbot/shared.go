package main

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/cobra"

	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
	"github.com/ducksnest/nestbot/store"
	nestddb "github.com/ducksnest/nestbot/store/dynamodb"
	nests3 "github.com/ducksnest/nestbot/store/s3"
)

// sharedFlags select where the state several replicas share lives:
// DynamoDB for the queue and the fleet lock, S3 for saved plans and the
// audit log. Unset, the state file in --state-dir holds everything.
type sharedFlags struct {
	Table           string
	TableEndpoint   string
	CreateTable     bool
	Bucket          string
	Prefix          string
	KMSKeyID        string
	BucketEndpoint  string
	BucketPathStyle bool
}

func (s *sharedFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.Table, "dynamodb-table", "", "share the job queue and the fleet lock through this DynamoDB table (default: the state file)")
	f.StringVar(&s.TableEndpoint, "dynamodb-endpoint", "", "DynamoDB endpoint URL (default: the SDK's)")
	f.BoolVar(&s.CreateTable, "dynamodb-create-table", false, "create the DynamoDB table if it does not exist")
	f.StringVar(&s.Bucket, "s3-bucket", "", "keep saved plans and the audit log in this S3 bucket (default: the state file)")
	f.StringVar(&s.Prefix, "s3-prefix", "nestbot/", "prefix of nestbot's objects in the bucket")
	f.StringVar(&s.KMSKeyID, "s3-kms-key-id", "", "encrypt objects with SSE-KMS under this key")
	f.StringVar(&s.BucketEndpoint, "s3-endpoint", "", "S3 endpoint URL (default: the SDK's)")
	f.BoolVar(&s.BucketPathStyle, "s3-path-style", false, "address the bucket in the path (S3-compatible servers)")
}

// stores is where the server's state lives.
type stores struct {
	DB        *store.DB // the state file: rollout journal, and the default for the rest
	Queue     store.Queue
	Locker    store.Locker
	Artifacts store.Artifacts
}

// open resolves the stores: DynamoDB and S3 where configured, else db.
func (s *sharedFlags) open(ctx context.Context, db *store.DB) (*stores, error) {
	st := &stores{DB: db, Queue: db.Queue(), Locker: db.Locks(), Artifacts: db.Artifacts()}
	if s.Table == "" && s.Bucket == "" {
		return st, nil
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration for the shared state: %w", err)
	}
	if err := nestaws.CheckCredentials(ctx, cfg); err != nil {
		return nil, fmt.Errorf("the shared state (--dynamodb-table, --s3-bucket): %w", err)
	}
	if s.Table != "" {
		ddb, err := nestddb.New(ctx, nestddb.Options{Table: s.Table, Client: nestddb.NewClient(cfg, s.TableEndpoint)})
		if err != nil {
			return nil, err
		}
		if s.CreateTable {
			if err := ddb.CreateTable(ctx); err != nil {
				return nil, err
			}
		}
		st.Queue, st.Locker = ddb, ddb
	}
	if s.Bucket != "" {
		a, err := nests3.New(ctx, nests3.Options{Bucket: s.Bucket, Prefix: s.Prefix, KMSKeyID: s.KMSKeyID,
			Client: nests3.NewClient(cfg, s.BucketEndpoint, s.BucketPathStyle)})
		if err != nil {
			return nil, err
		}
		st.Artifacts = a
	}
	return st, nil
}
