package main

import (
	"context"
	"fmt"
	"time"

	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
)

// cloudFlags are the flags of the verbs that reach AWS.
type cloudFlags struct {
	Endpoint string // --aws-endpoint; AWS_ENDPOINT_URL works too, through the SDK
}

// session is one observation of the live fleet, and the clients that made it.
type session struct {
	EC2  *awsec2.Client
	Live *reconcile.Live
}

// observeLive reads what can be observed today: the cloud plane, when
// nest.yaml has an aws section. Planes not observed are not planned, and
// the plan says so.
func observeLive(ctx context.Context, d desired, cf cloudFlags) (*session, error) {
	s := &session{Live: &reconcile.Live{FormatVersion: reconcile.FormatVersion, ObservedAt: time.Now().UTC()}}
	s.Live.Planes = []reconcile.Plane{}
	if d.Fleet.AWS == nil {
		return s, nil
	}
	client, err := nestaws.NewClient(ctx, nestaws.ClientOptions{Region: d.Fleet.AWS.Region, Endpoint: cf.Endpoint})
	if err != nil {
		return nil, err
	}
	obs := &nestaws.Observer{Client: client}
	cloud, err := obs.Observe(ctx, d.Fleet)
	if err != nil {
		return nil, fmt.Errorf("observe the cloud: %w", err)
	}
	s.EC2, s.Live.Cloud = client, cloud
	s.Live.Planes = append(s.Live.Planes, reconcile.PlaneCloud)
	return s, nil
}
