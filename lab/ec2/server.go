// Package ec2 is the lab's EC2 endpoint: an in-process HTTP server that speaks
// the EC2 Query protocol (API version 2016-11-15) well enough that the real
// aws-sdk-go-v2 EC2 client, pointed at it through BaseEndpoint, works
// unchanged.
//
// It verifies SigV4 signatures against one static key pair, keeps VPCs,
// subnets, internet gateways, route tables, security groups, instances,
// volumes and images in memory, moves instances through their states on an
// injectable clock, and can throttle, fail and lag on demand (see Faults).
//
//	srv := &ec2.Server{Now: clock.Now, Logger: logger}
//	if err := srv.Start(); err != nil { ... }
//	defer srv.Close()
//	client := awsec2.NewFromConfig(srv.Config("ap-northeast-2"))
package ec2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/middleware"

	"github.com/ducksnest/nestbot/internal/awsbody"
	"github.com/ducksnest/nestbot/internal/logs"
)

// Defaults used when the corresponding Server field is empty.
const (
	DefaultAccessKeyID     = "AKIDNESTLAB"
	DefaultSecretAccessKey = "nestlab/secret/0123456789abcdefghijklmnopqrstuv"
	DefaultAccountID       = "111122223333"

	DefaultPendingDelay        = 5 * time.Second
	DefaultStoppingDelay       = 5 * time.Second
	DefaultShuttingDownDelay   = 5 * time.Second
	DefaultTerminatedRetention = time.Hour
)

// APIVersion is the EC2 API version the server answers for.
const APIVersion = "2016-11-15"

const xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"

// Server is an EC2-compatible endpoint. Set its fields before the first
// request (or Start); the zero value is ready to use with defaults.
type Server struct {
	// AccessKeyID and SecretAccessKey are the only credentials accepted.
	// Empty means DefaultAccessKeyID / DefaultSecretAccessKey.
	AccessKeyID     string
	SecretAccessKey string

	// AccountID owns every resource. Empty means DefaultAccountID.
	AccountID string

	// Seed makes resource ids deterministic: the same seed and the same
	// sequence of calls give the same ids.
	Seed uint64

	// Now is the simulated clock that drives state transitions, visibility
	// lag and timestamps. Nil means time.Now. SigV4 dates are not compared
	// with it.
	Now func() time.Time

	// Logger receives a record per request and per fault; nil discards.
	Logger *slog.Logger

	// How long an instance stays pending, stopping and shutting-down.
	// Zero means the Default*Delay; a negative value means the next request
	// already sees the following state.
	PendingDelay      time.Duration
	StoppingDelay     time.Duration
	ShuttingDownDelay time.Duration

	// TerminatedRetention is how long a terminated instance stays visible to
	// DescribeInstances. Zero means DefaultTerminatedRetention.
	TerminatedRetention time.Duration

	// OnRunInstance, if set, is called once for each instance RunInstances
	// creates, after the state is committed and before the response is
	// written, with the instance's decoded user data. It must not block for
	// long; it may call back into the Server.
	OnRunInstance func(Instance)

	// OnTerminateInstance, if set, is called once for each instance
	// TerminateInstances moves to shutting-down, as OnRunInstance is.
	OnTerminateInstance func(Instance)

	initOnce sync.Once

	mu        sync.Mutex // guards st, region, requestSeq, idRand
	st        *state
	idRand    *rand.Rand
	region    string
	reqSeq    uint64
	faultsMu  sync.Mutex
	faults    Faults
	faultRand *rand.Rand
	callsMu   sync.Mutex
	calls     map[string]int64

	hs  *http.Server
	ln  net.Listener
	url string
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.AccessKeyID == "" {
			s.AccessKeyID = DefaultAccessKeyID
		}
		if s.SecretAccessKey == "" {
			s.SecretAccessKey = DefaultSecretAccessKey
		}
		if s.AccountID == "" {
			s.AccountID = DefaultAccountID
		}
		s.st = newState()
		s.idRand = rand.New(rand.NewPCG(s.Seed, s.Seed^0x6e657374626f7400))
		s.faultRand = rand.New(rand.NewPCG(0, 0))
		s.calls = make(map[string]int64)
	})
}

func (s *Server) logf(format string, args ...any) {
	logs.Or(s.Logger).Info(fmt.Sprintf(format, args...))
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Start listens on 127.0.0.1 on a free port and serves in the background.
func (s *Server) Start() error {
	s.init()
	if s.hs != nil {
		return errors.New("ec2.Start: already started")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("ec2.Start: %w", err)
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.hs = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.hs.Serve(ln)
	s.logf("ec2: listening on %s", s.url)
	return nil
}

// URL is the endpoint to use as BaseEndpoint, e.g. "http://127.0.0.1:41234".
// It is empty before Start.
func (s *Server) URL() string { return s.url }

// Close stops the listener and waits (at most 5s) for requests in flight.
func (s *Server) Close() error {
	if s.hs == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.hs.Shutdown(ctx)
	s.hs = nil
	if err != nil {
		return fmt.Errorf("ec2.Close: %w", err)
	}
	return nil
}

// Credentials returns the access key id and secret the server accepts.
func (s *Server) Credentials() (accessKeyID, secretAccessKey string) {
	s.init()
	return s.AccessKeyID, s.SecretAccessKey
}

// Config returns an aws.Config that reaches this server: static credentials,
// the given region, BaseEndpoint set to URL. It reads no environment or
// shared files. Call after Start.
//
// Its APIOptions carry one client-side workaround: requests are sent with a
// body that does not implement io.WriterTo. Otherwise smithy-go closing the
// body as soon as the response headers arrive can make net/http close the
// connection while the response body is still being read ("use of closed
// network connection"), a race that loopback timing turns from rare into
// routine.
func (s *Server) Config(region string) aws.Config {
	s.init()
	return aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, ""),
		BaseEndpoint: aws.String(s.url),
		APIOptions:   []func(*middleware.Stack) error{awsbody.WithoutWriterTo},
	}
}

// Region is the region of the most recent correctly signed request.
func (s *Server) Region() string {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.region
}

// Calls is how many requests for action (e.g. "DescribeInstances") reached
// the server, including those that failed or were answered with a fault.
func (s *Server) Calls(action string) int64 {
	s.init()
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	return s.calls[action]
}

// CallCounts returns a copy of all per-action counts.
func (s *Server) CallCounts() map[string]int64 {
	s.init()
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	m := make(map[string]int64, len(s.calls))
	for k, v := range s.calls {
		m[k] = v
	}
	return m
}

// ResetCalls zeroes every per-action count.
func (s *Server) ResetCalls() {
	s.init()
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	clear(s.calls)
}

func (s *Server) countCall(action string) {
	s.callsMu.Lock()
	s.calls[action]++
	s.callsMu.Unlock()
}

// call is one request being handled; handlers run with s.mu held.
type call struct {
	action string
	p      params
	now    time.Time
	region string
	// after runs once s.mu is released, before the response is written.
	after []func()
}

type handler func(s *Server, c *call) (any, error)

// ServeHTTP answers one EC2 Query request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	reqID := s.nextRequestID()
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		writeError(w, reqID, errf(400, "MalformedQueryString", "could not read request body: %v", err))
		return
	}
	p, err := parseParams(r, body)
	if err != nil {
		writeError(w, reqID, err)
		return
	}
	action := p.get("Action")
	if action == "" {
		writeError(w, reqID, errf(400, "MissingAction", "The request must contain the parameter Action"))
		return
	}
	s.countCall(action)

	region, err := s.verifySigV4(r, body)
	if err != nil {
		s.logf("ec2: %s rejected: %v", action, err)
		writeError(w, reqID, err)
		return
	}
	h := route(action)
	if h == nil {
		writeError(w, reqID, errf(400, "InvalidAction", "The action %s is not valid for this web service.", action))
		return
	}
	if err := s.rateFault(action); err != nil {
		s.logf("ec2: %s fault: %v", action, err)
		writeError(w, reqID, err)
		return
	}
	if v, _ := p.boolean("DryRun"); v {
		writeError(w, reqID, errf(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set."))
		return
	}

	c := &call{action: action, p: p, region: region}
	s.mu.Lock()
	s.region = region
	c.now = s.now()
	s.advance(c.now)
	out, err := h(s, c)
	s.mu.Unlock()
	for _, f := range c.after {
		f()
	}
	if err != nil {
		s.logf("ec2: %s: %v", action, err)
		writeError(w, reqID, err)
		return
	}
	s.logf("ec2: %s ok", action)
	writeResponse(w, action, reqID, out)
}

func (s *Server) nextRequestID() string {
	s.mu.Lock()
	s.reqSeq++
	n := s.reqSeq
	s.mu.Unlock()
	return fmt.Sprintf("6e657374-6c61-4200-8000-%012x", n)
}

// SupportedActions lists the EC2 actions the server implements.
func SupportedActions() []string {
	a := []string{
		"DescribeVpcs", "CreateVpc", "DeleteVpc", "ModifyVpcAttribute", "DescribeVpcAttribute",
		"DescribeSubnets", "CreateSubnet", "DeleteSubnet", "ModifySubnetAttribute",
		"DescribeInternetGateways", "CreateInternetGateway", "AttachInternetGateway",
		"DetachInternetGateway", "DeleteInternetGateway",
		"DescribeRouteTables", "CreateRouteTable", "CreateRoute", "DeleteRoute",
		"AssociateRouteTable", "DisassociateRouteTable", "DeleteRouteTable",
		"DescribeSecurityGroups", "CreateSecurityGroup", "DeleteSecurityGroup",
		"AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress",
		"RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress", "DescribeSecurityGroupRules",
		"DescribeInstances", "RunInstances", "StartInstances", "StopInstances",
		"TerminateInstances", "ModifyInstanceAttribute", "DescribeInstanceAttribute",
		"DescribeIamInstanceProfileAssociations", "AssociateIamInstanceProfile",
		"ReplaceIamInstanceProfileAssociation", "DisassociateIamInstanceProfile",
		"DescribeVolumes", "ModifyVolume", "DescribeImages", "CreateTags", "DeleteTags",
		"ImportKeyPair", "DescribeKeyPairs", "DeleteKeyPair", "RegisterImage", "DeregisterImage",
		"DescribeAvailabilityZones", "DescribeAccountAttributes", "GetEbsEncryptionByDefault",
		"EnableEbsEncryptionByDefault", "DisableEbsEncryptionByDefault", "DescribeTags", "DescribeNetworkAcls",
		"DescribeInstanceTypes", "DescribeInstanceCreditSpecifications", "ModifyInstanceMetadataOptions",
		"GetConsoleOutput", "DescribeInstanceStatus",
	}
	slices.Sort(a)
	return a
}

func route(action string) handler {
	switch action {
	case "DescribeVpcs":
		return (*Server).describeVpcs
	case "CreateVpc":
		return (*Server).createVpc
	case "DeleteVpc":
		return (*Server).deleteVpc
	case "ModifyVpcAttribute":
		return (*Server).modifyVpcAttribute
	case "DescribeVpcAttribute":
		return (*Server).describeVpcAttribute
	case "DescribeSubnets":
		return (*Server).describeSubnets
	case "CreateSubnet":
		return (*Server).createSubnet
	case "DeleteSubnet":
		return (*Server).deleteSubnet
	case "ModifySubnetAttribute":
		return (*Server).modifySubnetAttribute
	case "DescribeInternetGateways":
		return (*Server).describeInternetGateways
	case "CreateInternetGateway":
		return (*Server).createInternetGateway
	case "AttachInternetGateway":
		return (*Server).attachInternetGateway
	case "DetachInternetGateway":
		return (*Server).detachInternetGateway
	case "DeleteInternetGateway":
		return (*Server).deleteInternetGateway
	case "DescribeRouteTables":
		return (*Server).describeRouteTables
	case "CreateRouteTable":
		return (*Server).createRouteTable
	case "CreateRoute":
		return (*Server).createRoute
	case "DeleteRoute":
		return (*Server).deleteRoute
	case "AssociateRouteTable":
		return (*Server).associateRouteTable
	case "DisassociateRouteTable":
		return (*Server).disassociateRouteTable
	case "DeleteRouteTable":
		return (*Server).deleteRouteTable
	case "DescribeSecurityGroups":
		return (*Server).describeSecurityGroups
	case "CreateSecurityGroup":
		return (*Server).createSecurityGroup
	case "DeleteSecurityGroup":
		return (*Server).deleteSecurityGroup
	case "AuthorizeSecurityGroupIngress":
		return (*Server).authorizeIngress
	case "AuthorizeSecurityGroupEgress":
		return (*Server).authorizeEgress
	case "RevokeSecurityGroupIngress":
		return (*Server).revokeIngress
	case "RevokeSecurityGroupEgress":
		return (*Server).revokeEgress
	case "DescribeSecurityGroupRules":
		return (*Server).describeSecurityGroupRules
	case "DescribeInstances":
		return (*Server).describeInstances
	case "RunInstances":
		return (*Server).runInstances
	case "StartInstances":
		return (*Server).startInstances
	case "StopInstances":
		return (*Server).stopInstances
	case "TerminateInstances":
		return (*Server).terminateInstances
	case "ModifyInstanceAttribute":
		return (*Server).modifyInstanceAttribute
	case "DescribeInstanceAttribute":
		return (*Server).describeInstanceAttribute
	case "DescribeIamInstanceProfileAssociations":
		return (*Server).describeIamInstanceProfileAssociations
	case "AssociateIamInstanceProfile":
		return (*Server).associateIamInstanceProfile
	case "ReplaceIamInstanceProfileAssociation":
		return (*Server).replaceIamInstanceProfileAssociation
	case "DisassociateIamInstanceProfile":
		return (*Server).disassociateIamInstanceProfile
	case "DescribeVolumes":
		return (*Server).describeVolumes
	case "ModifyVolume":
		return (*Server).modifyVolume
	case "DescribeImages":
		return (*Server).describeImages
	case "CreateTags":
		return (*Server).createTags
	case "DeleteTags":
		return (*Server).deleteTags
	case "ImportKeyPair":
		return (*Server).importKeyPair
	case "DescribeKeyPairs":
		return (*Server).describeKeyPairs
	case "DeleteKeyPair":
		return (*Server).deleteKeyPair
	case "RegisterImage":
		return (*Server).registerImage
	case "DeregisterImage":
		return (*Server).deregisterImage
	case "DescribeAvailabilityZones":
		return (*Server).describeAvailabilityZones
	case "DescribeAccountAttributes":
		return (*Server).describeAccountAttributes
	case "GetEbsEncryptionByDefault":
		return (*Server).getEbsEncryptionByDefault
	case "EnableEbsEncryptionByDefault", "DisableEbsEncryptionByDefault":
		return (*Server).setEbsEncryptionByDefault
	case "DescribeTags":
		return (*Server).describeTags
	case "DescribeNetworkAcls":
		return (*Server).describeNetworkAcls
	case "DescribeInstanceTypes":
		return (*Server).describeInstanceTypes
	case "DescribeInstanceCreditSpecifications":
		return (*Server).describeInstanceCreditSpecifications
	case "ModifyInstanceMetadataOptions":
		return (*Server).modifyInstanceMetadataOptions
	case "GetConsoleOutput":
		return (*Server).getConsoleOutput
	case "DescribeInstanceStatus":
		return (*Server).describeInstanceStatus
	}
	return nil
}
