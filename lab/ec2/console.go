package ec2

import (
	"encoding/base64"
	"fmt"
)

// BootFailed records that the lab could not boot what instance id's
// user-data asks for (no host name in it, no tailnet key, a boot that
// failed): the machine says so where a real one would — its console output
// (GetConsoleOutput) ends with why, and its instance status check is
// impaired (DescribeInstanceStatus) — and the server logs it. Nothing is
// booted in its place.
func (s *Server) BootFailed(id, why string) {
	s.init()
	s.mu.Lock()
	in := s.st.instances[id]
	if in != nil {
		in.console += fmt.Sprintf("nestlab: %s boots no lab host: %s\n", id, why)
		in.impaired = true
	}
	s.mu.Unlock()
	s.logf("ec2: instance %s boots no lab host: %s", id, why)
}

func (s *Server) getConsoleOutput(c *call) (any, error) {
	in, err := s.lookupInstance(c.p.get("InstanceId"))
	if err != nil {
		return nil, err
	}
	resp := struct {
		InstanceID string `xml:"instanceId"`
		Output     string `xml:"output,omitempty"`
		Timestamp  string `xml:"timestamp"`
	}{InstanceID: in.id, Timestamp: fmtTime(c.now)}
	if in.console != "" {
		resp.Output = base64.StdEncoding.EncodeToString([]byte(in.console))
	}
	return resp, nil
}

type xInstanceStatus struct {
	AvailabilityZone string         `xml:"availabilityZone"`
	InstanceID       string         `xml:"instanceId"`
	State            xInstanceState `xml:"instanceState"`
	InstanceStatus   xStatusSummary `xml:"instanceStatus"`
	SystemStatus     xStatusSummary `xml:"systemStatus"`
}

type xStatusSummary struct {
	Details []xStatusDetail `xml:"details>item"`
	Status  string          `xml:"status"`
}

type xStatusDetail struct {
	Name   string `xml:"name"`
	Status string `xml:"status"`
}

func summary(ok bool) xStatusSummary {
	if ok {
		return xStatusSummary{Details: []xStatusDetail{{"reachability", "passed"}}, Status: "ok"}
	}
	return xStatusSummary{Details: []xStatusDetail{{"reachability", "failed"}}, Status: "impaired"}
}

// describeInstanceStatus reports the status checks of running instances
// (of every instance with IncludeAllInstances): the system's pass, the
// instance's fail where BootFailed said so.
func (s *Server) describeInstanceStatus(c *call) (any, error) {
	var list []*instance
	if len(c.p.list("InstanceId")) > 0 {
		var err error
		if list, err = s.lookupInstances(c.p); err != nil {
			return nil, err
		}
	} else {
		list = sortedValues(s.st.instances)
	}
	all, _ := c.p.boolean("IncludeAllInstances")
	resp := struct {
		Statuses set[xInstanceStatus] `xml:"instanceStatusSet"`
	}{}
	for _, in := range list {
		if in.state != stateRunning && !all {
			continue
		}
		st := xInstanceStatus{AvailabilityZone: in.az, InstanceID: in.id, State: xInstanceState{stateCode(in.state), in.state}}
		if in.state == stateRunning {
			st.InstanceStatus, st.SystemStatus = summary(!in.impaired), summary(true)
		} else {
			st.InstanceStatus, st.SystemStatus = xStatusSummary{Status: "not-applicable"}, xStatusSummary{Status: "not-applicable"}
		}
		resp.Statuses.Items = append(resp.Statuses.Items, st)
	}
	return resp, nil
}

func (s *Server) modifyInstanceMetadataOptions(c *call) (any, error) {
	in, err := s.lookupInstance(c.p.get("InstanceId"))
	if err != nil {
		return nil, err
	}
	m := in.metadata
	if err := m.set(c.p); err != nil {
		return nil, err
	}
	in.metadata = m
	x := m.xml()
	x.State = "pending" // EC2 applies the change a moment later
	return struct {
		InstanceID string    `xml:"instanceId"`
		Options    xMetadata `xml:"instanceMetadataOptions"`
	}{in.id, x}, nil
}
