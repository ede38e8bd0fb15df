package ec2

import (
	"encoding/base64"
	"slices"
	"time"
)

type xStateChange struct {
	InstanceID string         `xml:"instanceId"`
	Current    xInstanceState `xml:"currentState"`
	Previous   xInstanceState `xml:"previousState"`
}

// lookupInstances resolves InstanceId.N, in order; every id must exist.
func (s *Server) lookupInstances(p params) ([]*instance, error) {
	ids := p.list("InstanceId")
	if len(ids) == 0 {
		return nil, errf(400, "MissingParameter", "The request must contain the parameter InstanceId")
	}
	return pick(s.st.instances, instanceKind, ids)
}

func (s *Server) lookupInstance(id string) (*instance, error) {
	if id == "" {
		return nil, errf(400, "MissingParameter", "The request must contain the parameter InstanceId")
	}
	list, err := s.lookupInstances(params{"InstanceId.1": id})
	if err != nil {
		return nil, err
	}
	return list[0], nil
}

// transition checks every instance with ok, then moves them all to next.
func (s *Server) transition(c *call, ok func(*instance) error, next func(*instance)) (any, error) {
	list, err := s.lookupInstances(c.p)
	if err != nil {
		return nil, err
	}
	for _, in := range list {
		if err := ok(in); err != nil {
			return nil, err
		}
	}
	resp := struct {
		Changes []xStateChange `xml:"instancesSet>item"`
	}{}
	for _, in := range list {
		prev := in.state
		next(in)
		resp.Changes = append(resp.Changes, xStateChange{InstanceID: in.id,
			Current: xInstanceState{stateCode(in.state), in.state}, Previous: xInstanceState{stateCode(prev), prev}})
	}
	return resp, nil
}

func userReason(now time.Time) string {
	return "User initiated (" + now.UTC().Format("2006-01-02 15:04:05 GMT") + ")"
}

func (s *Server) startInstances(c *call) (any, error) {
	return s.transition(c, func(in *instance) error {
		switch in.state {
		case stateStopped, statePending, stateRunning:
			return nil
		}
		return errf(400, "IncorrectInstanceState", "The instance '%s' is not in a state from which it can be started.", in.id)
	}, func(in *instance) {
		if in.state != stateStopped {
			return
		}
		in.state, in.stateAt, in.reason, in.reasonCode, in.reasonDetail = statePending, c.now, "", "", ""
	})
}

func (s *Server) stopInstances(c *call) (any, error) {
	return s.transition(c, func(in *instance) error {
		if in.disableAPIStop {
			return errf(400, "OperationNotPermitted",
				"The instance '%s' may not be stopped. Modify its 'disableApiStop' instance attribute and try again.", in.id)
		}
		switch in.state {
		case stateRunning, stateStopping, stateStopped:
			return nil
		}
		return errf(400, "IncorrectInstanceState", "This instance '%s' is not in a state from which it can be stopped.", in.id)
	}, func(in *instance) {
		if in.state != stateRunning {
			return
		}
		in.state, in.stateAt, in.reason = stateStopping, c.now, userReason(c.now)
		in.publicIP = ""
	})
}

func (s *Server) terminateInstances(c *call) (any, error) {
	return s.transition(c, func(in *instance) error {
		if in.disableAPITermination {
			return errf(400, "OperationNotPermitted",
				"The instance '%s' may not be terminated. Modify its 'disableApiTermination' instance attribute and try again.", in.id)
		}
		return nil
	}, func(in *instance) {
		if in.state == stateShuttingDown || in.state == stateTerminated {
			return
		}
		in.state, in.stateAt, in.reason = stateShuttingDown, c.now, userReason(c.now)
		in.publicIP = ""
		if s.OnTerminateInstance != nil {
			snap, hook := s.snapshot(in), s.OnTerminateInstance
			c.after = append(c.after, func() { hook(snap) })
		}
	})
}

func (s *Server) modifyInstanceAttribute(c *call) (any, error) {
	in, err := s.lookupInstance(c.p.get("InstanceId"))
	if err != nil {
		return nil, err
	}
	p := c.p
	// The Attribute/Value form is the same as the <Attribute>.Value form.
	if attr := p.get("Attribute"); attr != "" {
		key := map[string]string{"instanceType": "InstanceType", "userData": "UserData",
			"disableApiTermination": "DisableApiTermination", "disableApiStop": "DisableApiStop"}[attr]
		if key == "" {
			return nil, errf(400, "UnsupportedOperation", "The lab does not support modifying attribute %s.", attr)
		}
		p = params{key + ".Value": p.get("Value")}
	}
	stopped := func() error {
		if in.state != stateStopped {
			return errf(400, "IncorrectInstanceState", "The instance '%s' is not in the 'stopped' state.", in.id)
		}
		return nil
	}
	switch {
	case p.has("InstanceType.Value"):
		t := p.get("InstanceType.Value")
		if !validInstanceType(t) {
			return nil, errf(400, "InvalidParameterValue", "Invalid value '%s' for InstanceType.", t)
		}
		if err := stopped(); err != nil {
			return nil, err
		}
		in.instanceType = t
	case p.has("UserData.Value"):
		b, err := base64.StdEncoding.DecodeString(p.get("UserData.Value"))
		if err != nil {
			return nil, errf(400, "InvalidParameterValue", "Invalid BASE64 encoding of user data.")
		}
		if err := stopped(); err != nil {
			return nil, err
		}
		in.userData = b
	case p.has("DisableApiTermination.Value"):
		in.disableAPITermination, _ = p.boolean("DisableApiTermination.Value")
	case p.has("DisableApiStop.Value"):
		in.disableAPIStop, _ = p.boolean("DisableApiStop.Value")
	case len(p.list("GroupId")) > 0:
		ids := p.list("GroupId")
		for _, id := range ids {
			sg, err := s.lookupSG(id)
			if err != nil {
				return nil, err
			}
			if sg.vpcID != in.vpcID {
				return nil, errf(400, "InvalidGroup.NotFound", "The security group '%s' does not exist in VPC '%s'", id, in.vpcID)
			}
		}
		in.sgIDs = ids
	default:
		return nil, errf(400, "UnsupportedOperation",
			"The lab supports modifying only InstanceType, UserData, DisableApiTermination, DisableApiStop and GroupId.")
	}
	return returnResponse{true}, nil
}

func (s *Server) describeInstanceAttribute(c *call) (any, error) {
	in, err := s.lookupInstance(c.p.get("InstanceId"))
	if err != nil {
		return nil, err
	}
	attr, err := c.p.require("Attribute")
	if err != nil {
		return nil, err
	}
	type response struct {
		InstanceID         string         `xml:"instanceId"`
		InstanceType       *xValue        `xml:"instanceType"`
		UserData           *xValue        `xml:"userData"`
		DisableAPITerm     *xBoolValue    `xml:"disableApiTermination"`
		DisableAPIStop     *xBoolValue    `xml:"disableApiStop"`
		ShutdownBehavior   *xValue        `xml:"instanceInitiatedShutdownBehavior"`
		RootDeviceName     *xValue        `xml:"rootDeviceName"`
		SourceDestCheck    *xBoolValue    `xml:"sourceDestCheck"`
		EbsOptimized       *xBoolValue    `xml:"ebsOptimized"`
		EnaSupport         *xBoolValue    `xml:"enaSupport"`
		Groups             []xGroup       `xml:"groupSet>item"`
		BlockDeviceMapping []xInstanceBDM `xml:"blockDeviceMapping>item"`
	}
	r := response{InstanceID: in.id}
	switch attr {
	case "instanceType":
		r.InstanceType = &xValue{in.instanceType}
	case "userData":
		r.UserData = &xValue{}
		if len(in.userData) > 0 {
			r.UserData.Value = base64.StdEncoding.EncodeToString(in.userData)
		}
	case "disableApiTermination":
		r.DisableAPITerm = &xBoolValue{in.disableAPITermination}
	case "disableApiStop":
		r.DisableAPIStop = &xBoolValue{in.disableAPIStop}
	case "instanceInitiatedShutdownBehavior":
		r.ShutdownBehavior = &xValue{"stop"}
	case "rootDeviceName":
		r.RootDeviceName = &xValue{in.rootDeviceName}
	case "sourceDestCheck":
		r.SourceDestCheck = &xBoolValue{true}
	case "ebsOptimized":
		r.EbsOptimized = &xBoolValue{false}
	case "enaSupport":
		r.EnaSupport = &xBoolValue{true}
	case "groupSet":
		r.Groups = s.groupsXML(in.sgIDs)
	case "blockDeviceMapping":
		r.BlockDeviceMapping = s.instanceXML(in).BlockDevices
	default:
		return nil, errf(400, "InvalidParameterValue", "Value (%s) for parameter attribute is invalid. Unknown attribute.", attr)
	}
	return r, nil
}

type xProfileAssoc struct {
	AssociationID string      `xml:"associationId"`
	InstanceID    string      `xml:"instanceId"`
	Profile       xIAMProfile `xml:"iamInstanceProfile"`
	State         string      `xml:"state"`
	Timestamp     string      `xml:"timestamp,omitempty"`
}

func (s *Server) profileAssocXML(in *instance) xProfileAssoc {
	return xProfileAssoc{AssociationID: in.profileAssocID, InstanceID: in.id,
		Profile: xIAMProfile{Arn: in.profile.arn, ID: in.profile.id}, State: "associated",
		Timestamp: fmtTime(in.profileAssocAt)}
}

// profileAssociations is every instance with a profile, by the id of its
// association.
func (s *Server) profileAssociations() map[string]*instance {
	byAssoc := map[string]*instance{}
	for _, in := range s.st.instances {
		if in.profileAssocID != "" && in.profile != nil {
			byAssoc[in.profileAssocID] = in
		}
	}
	return byAssoc
}

func profileAssocFilter(in *instance) filterFunc {
	return func(name string) ([]string, bool) {
		switch name {
		case "instance-id":
			return []string{in.id}, true
		case "state":
			return []string{"associated"}, true
		}
		return nil, false
	}
}

func (s *Server) describeIamInstanceProfileAssociations(c *call) (any, error) {
	return describe(c, "iamInstanceProfileAssociationSet", s.profileAssocXML, listing[instance]{pageMin: 5, pageMax: 1000,
		pick:   byID(s.profileAssociations(), profileAssocKind, c.p.list("AssociationId")),
		filter: profileAssocFilter, id: func(in *instance) string { return in.profileAssocID }})
}

func (s *Server) associateIamInstanceProfile(c *call) (any, error) {
	in, err := s.lookupInstance(c.p.get("InstanceId"))
	if err != nil {
		return nil, err
	}
	prof, err := s.requestedProfile(c)
	if err != nil {
		return nil, err
	}
	if in.profileAssocID != "" {
		return nil, errf(400, "IncorrectState", "There is an existing association for instance %s", in.id)
	}
	if err := profileChangeAllowed(in); err != nil {
		return nil, err
	}
	return s.associate(c, in, prof), nil
}

// requestedProfile is the instance profile the request names in
// IamInstanceProfile, which it must.
func (s *Server) requestedProfile(c *call) (*instanceProfile, error) {
	prof, err := s.profileFromParams(c.p.sub("IamInstanceProfile"))
	if err != nil {
		return nil, err
	}
	if prof == nil {
		return nil, errf(400, "MissingParameter", "The request must contain the parameter IamInstanceProfile")
	}
	return prof, nil
}

// associate gives the instance prof under a new association id and answers
// as EC2 does, with the association "associating".
func (s *Server) associate(c *call, in *instance, prof *instanceProfile) any {
	in.profile, in.profileAssocID, in.profileAssocAt = prof, s.newID("iip-assoc"), c.now
	x := s.profileAssocXML(in)
	x.State = "associating"
	return struct {
		Assoc xProfileAssoc `xml:"iamInstanceProfileAssociation"`
	}{x}
}

// profileAssociation finds the instance whose current association is id.
func (s *Server) profileAssociation(id string) (*instance, error) {
	if id == "" {
		return nil, errf(400, "MissingParameter", "The request must contain the parameter AssociationId")
	}
	return lookup(s.profileAssociations(), profileAssocKind, id)
}

func profileChangeAllowed(in *instance) error {
	if !slices.Contains([]string{statePending, stateRunning, stateStopping, stateStopped}, in.state) {
		return errf(400, "IncorrectInstanceState", "The instance '%s' is not in a valid state for this operation.", in.id)
	}
	return nil
}

// replaceIamInstanceProfileAssociation swaps the profile of an association
// for another. As on EC2, the new association has an id of its own; the
// lab makes it current at once, so the instance shows the new profile on
// the next DescribeInstances.
func (s *Server) replaceIamInstanceProfileAssociation(c *call) (any, error) {
	in, err := s.profileAssociation(c.p.get("AssociationId"))
	if err != nil {
		return nil, err
	}
	prof, err := s.requestedProfile(c)
	if err != nil {
		return nil, err
	}
	if err := profileChangeAllowed(in); err != nil {
		return nil, err
	}
	return s.associate(c, in, prof), nil
}

// disassociateIamInstanceProfile removes an instance's profile. EC2 answers
// "disassociating"; the lab drops the association at once.
func (s *Server) disassociateIamInstanceProfile(c *call) (any, error) {
	in, err := s.profileAssociation(c.p.get("AssociationId"))
	if err != nil {
		return nil, err
	}
	if err := profileChangeAllowed(in); err != nil {
		return nil, err
	}
	x := s.profileAssocXML(in)
	x.State, x.Timestamp = "disassociating", ""
	in.profile, in.profileAssocID, in.profileAssocAt = nil, "", time.Time{}
	return struct {
		Assoc xProfileAssoc `xml:"iamInstanceProfileAssociation"`
	}{x}, nil
}
