package ec2

// registerImage makes an AMI of the account (owned by "self") from a
// snapshot that exists: the root snapshot of an image the lab has, as
// `aws ec2 register-image --block-device-mappings
// DeviceName=/dev/xvda,Ebs={SnapshotId=snap-…}` names it.
func (s *Server) registerImage(c *call) (any, error) {
	name, err := c.p.require("Name")
	if err != nil {
		return nil, err
	}
	if len(name) < 3 || len(name) > 128 {
		return nil, errf(400, "InvalidAMIName.Malformed", "AMI names must be between 3 and 128 characters long")
	}
	for _, img := range s.st.images {
		if img.OwnerID == s.AccountID && img.Name == name {
			return nil, errf(400, "InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, img.ID)
		}
	}
	if c.p.get("ImageLocation") != "" {
		return nil, errf(400, "UnsupportedOperation", "The lab registers EBS-backed images from a snapshot only (BlockDeviceMapping with Ebs.SnapshotId).")
	}
	root := c.p.get("RootDeviceName")
	if root == "" {
		return nil, errf(400, "MissingParameter", "The request must contain the parameter rootDeviceName")
	}
	img := Image{Name: name, Description: c.p.get("Description"), Architecture: c.p.get("Architecture"), RootDeviceName: root}
	var snapshot string
	for _, m := range c.p.items("BlockDeviceMapping") {
		if m.get("DeviceName") != root {
			continue
		}
		ebs := m.sub("Ebs")
		snapshot = ebs.get("SnapshotId")
		size, hasSize, err := ebs.int("VolumeSize")
		if err != nil {
			return nil, err
		}
		if hasSize {
			img.RootVolumeGiB = size
		}
	}
	if snapshot == "" {
		return nil, errf(400, "InvalidBlockDeviceMapping", "The root device %s needs a block device mapping with a snapshot", root)
	}
	var from *image
	for _, o := range sortedValues(s.st.images) {
		if o.snapshotID == snapshot {
			from = o
		}
	}
	if from == nil {
		if !validID("snap", snapshot) {
			return nil, malformed("InvalidSnapshotID.Malformed", snapshot, "snap")
		}
		return nil, errf(400, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", snapshot)
	}
	if img.RootVolumeGiB == 0 {
		img.RootVolumeGiB = from.RootVolumeGiB
	}
	if img.RootVolumeGiB < from.RootVolumeGiB {
		return nil, errf(400, "InvalidBlockDeviceMapping", "Volume of size %dGB is smaller than snapshot '%s', expect size >= %dGB",
			img.RootVolumeGiB, snapshot, from.RootVolumeGiB)
	}
	id, err := s.seedImage(img)
	if err != nil {
		return nil, errf(500, "InternalError", "%v", err)
	}
	s.st.images[id].snapshotID = snapshot
	return struct {
		ImageID string `xml:"imageId"`
	}{id}, nil
}

func (s *Server) deregisterImage(c *call) (any, error) {
	id, err := c.p.require("ImageId")
	if err != nil {
		return nil, err
	}
	img, err := lookup(s.st.images, imageKind, id)
	if err != nil {
		return nil, err
	}
	if img.OwnerID != s.AccountID {
		return nil, errf(400, "AuthFailure", "Not authorized for image:%s", id)
	}
	delete(s.st.images, id)
	return returnResponse{true}, nil
}
