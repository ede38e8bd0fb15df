package ec2

import (
	"math/rand/v2"
	"slices"
	"time"
)

// Faults are failures the server injects on demand. Set them with
// SetFaults; every field's zero value means "no fault". A request that is
// answered with a fault changes nothing.
type Faults struct {
	// Seed seeds the PRNG that decides which requests get a rate fault; the
	// same seed and request sequence give the same faults.
	Seed uint64

	// ThrottleRate is the fraction (0..1) of requests answered with
	// RequestLimitExceeded (HTTP 503).
	ThrottleRate float64

	// InternalErrorRate is the fraction (0..1) of requests answered with
	// InternalError (HTTP 500).
	InternalErrorRate float64

	// Actions limits the two rate faults to these actions (e.g.
	// "RunInstances"); empty means every action.
	Actions []string

	// VisibilityLag hides an instance from DescribeInstances (listing and
	// InstanceId lookups, which answer InvalidInstanceID.NotFound) for this
	// long after RunInstances created it, like EC2's eventual consistency.
	// Its ClientToken still dedupes, and other actions see it at once.
	VisibilityLag time.Duration

	// ImageNotFound lists image ids that RunInstances and DescribeImages
	// (by ImageId) treat as nonexistent (InvalidAMIID.NotFound), e.g. a
	// deregistered AMI. "*" means every image.
	ImageNotFound []string

	// InsufficientCapacity lists instance types RunInstances has no capacity
	// for (InsufficientInstanceCapacity, HTTP 500). "*" means every type.
	InsufficientCapacity []string
}

// SetFaults replaces the active faults and reseeds the fault PRNG.
func (s *Server) SetFaults(f Faults) {
	s.init()
	f.Actions = slices.Clone(f.Actions)
	f.ImageNotFound = slices.Clone(f.ImageNotFound)
	f.InsufficientCapacity = slices.Clone(f.InsufficientCapacity)
	s.faultsMu.Lock()
	defer s.faultsMu.Unlock()
	s.faults = f
	s.faultRand = rand.New(rand.NewPCG(f.Seed, f.Seed^0x6661756c7473))
}

// Faults returns the active faults.
func (s *Server) Faults() Faults {
	s.init()
	s.faultsMu.Lock()
	defer s.faultsMu.Unlock()
	f := s.faults
	f.Actions = slices.Clone(f.Actions)
	f.ImageNotFound = slices.Clone(f.ImageNotFound)
	f.InsufficientCapacity = slices.Clone(f.InsufficientCapacity)
	return f
}

// rateFault decides, before anything else happens, whether this request is
// throttled or fails with an internal error.
func (s *Server) rateFault(action string) error {
	s.faultsMu.Lock()
	defer s.faultsMu.Unlock()
	f := &s.faults
	if f.ThrottleRate <= 0 && f.InternalErrorRate <= 0 {
		return nil
	}
	if len(f.Actions) > 0 && !slices.Contains(f.Actions, action) {
		return nil
	}
	r := s.faultRand.Float64()
	switch {
	case r < f.ThrottleRate:
		return errf(503, "RequestLimitExceeded", "Request limit exceeded.")
	case r < f.ThrottleRate+f.InternalErrorRate:
		return errf(500, "InternalError", "An internal error has occurred")
	}
	return nil
}

func (s *Server) visibilityLag() time.Duration {
	s.faultsMu.Lock()
	defer s.faultsMu.Unlock()
	return s.faults.VisibilityLag
}

func (s *Server) imageFaulted(id string) bool {
	s.faultsMu.Lock()
	defer s.faultsMu.Unlock()
	return slices.Contains(s.faults.ImageNotFound, "*") || slices.Contains(s.faults.ImageNotFound, id)
}

func (s *Server) capacityFaulted(instanceType string) bool {
	s.faultsMu.Lock()
	defer s.faultsMu.Unlock()
	return slices.Contains(s.faults.InsufficientCapacity, "*") ||
		slices.Contains(s.faults.InsufficientCapacity, instanceType)
}
