package rollout

import (
	"fmt"
	"sort"

	"github.com/ducksnest/nestbot/reconcile"
)

// BatchesFromSteps groups a plan's roll steps (plane hosts, action roll,
// address host.<name>) by their Batch number, in batch order, keeping the
// plan's order within a batch. Other steps are ignored.
func BatchesFromSteps(steps []reconcile.Step) ([][]string, error) {
	byBatch := map[int][]string{}
	for _, st := range steps {
		if st.Plane != reconcile.PlaneHosts || st.Action != reconcile.ActionRoll {
			continue
		}
		name := st.Address.Name
		if !st.Address.Is(reconcile.PlaneHosts, "") || name == "" {
			return nil, fmt.Errorf("rollout: roll step %q does not name a host (host.<name>)", st.Address)
		}
		if st.Batch < 1 {
			return nil, fmt.Errorf("rollout: roll step %s has no batch", st.Address)
		}
		byBatch[st.Batch] = append(byBatch[st.Batch], name)
	}
	nums := make([]int, 0, len(byBatch))
	for n := range byBatch {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	out := make([][]string, 0, len(nums))
	for _, n := range nums {
		out = append(out, byBatch[n])
	}
	return out, nil
}
