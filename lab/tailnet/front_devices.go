package tailnet

import (
	"errors"
	"strconv"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// errNoDevice is deleteDevice's answer for an id no device has.
var errNoDevice = errors.New("device not found")

// deleteDevice deletes the device whose id (numeric or stable) is id:
// it leaves the devices list and every netmap, and is logged out.
func (f *front) deleteDevice(id string) error {
	var target *tailcfg.Node
	var keys []key.NodePublic
	f.mu.Lock()
	for _, n := range f.control.AllNodes() {
		if string(n.StableID) != id && strconv.FormatInt(int64(n.ID), 10) != id {
			continue
		}
		if _, gone := f.deleted[n.StableID]; gone {
			continue
		}
		keys = append(keys, n.Key)
		if ns := f.nodes[n.Key]; target == nil || ns != nil && !ns.deleted {
			target = n
		}
	}
	if target == nil {
		f.mu.Unlock()
		return errNoDevice
	}
	f.deleted[target.StableID] = f.now()
	f.delIDs[target.ID] = true
	for _, k := range keys {
		ns := f.nodes[k]
		if ns == nil {
			ns = &nodeState{}
			f.nodes[k] = ns
		}
		ns.deleted = true
	}
	f.mu.Unlock()
	// Expiring its key logs the device out, and the update testcontrol
	// sends every node carries netmaps without it.
	target.KeyExpiry = f.now().Add(-time.Minute)
	f.control.UpdateNode(target)
	return nil
}

// expireEphemeral deletes the ephemeral device nk if it has held no map
// poll for ephemeralTimeout, as Tailscale removes ephemeral devices that
// went offline.
func (f *front) expireEphemeral(nk key.NodePublic) {
	f.mu.Lock()
	ns := f.nodes[nk]
	stale := !f.closed && ns != nil && !ns.deleted && ns.streams == 0 && f.now().Sub(ns.lastSeen) >= f.ephemeralTimeout
	f.mu.Unlock()
	if !stale {
		return // back online, deleted already, or a later timer's to decide
	}
	if n := f.control.Node(nk); n != nil {
		if err := f.deleteDevice(string(n.StableID)); err == nil {
			f.logf("tailnet front: ephemeral device %s (%s) removed after %s offline", n.StableID, n.Hostinfo.Hostname(), f.ephemeralTimeout)
		}
	}
}

// device is one device as the front knows it: testcontrol's node and the
// front's notes.
type device struct {
	node  *tailcfg.Node
	state nodeState
}

// devices lists the devices not deleted, one per stable id (the latest
// node key of a device whose key rotated).
func (f *front) devices() []device {
	f.mu.Lock()
	defer f.mu.Unlock()
	byID := map[tailcfg.StableNodeID]int{}
	var out []device
	for _, n := range f.control.AllNodes() {
		if _, gone := f.deleted[n.StableID]; gone {
			continue
		}
		d := device{node: n}
		if ns := f.nodes[n.Key]; ns != nil {
			if ns.deleted {
				continue
			}
			d.state = *ns
		}
		if i, ok := byID[n.StableID]; ok {
			if d.state.created.After(out[i].state.created) {
				out[i] = d
			}
			continue
		}
		byID[n.StableID] = len(out)
		out = append(out, d)
	}
	return out
}
