package pki

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestSortSpecsSortsByID: the specs, shuffled, come back in ID order, each
// whole (sortSpecs moves them along the cycles of the permutation).
func TestSortSpecsSortsByID(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 10, 1000} {
		specs := make([]Spec, n)
		for i := range specs {
			specs[i] = Spec{ID: fmt.Sprintf("host-%04d/leaf", i), Name: fmt.Sprint(i), DNSNames: []string{fmt.Sprint(i)}}
		}
		rng.Shuffle(n, func(i, j int) { specs[i], specs[j] = specs[j], specs[i] })
		sortSpecs(specs)
		for i, s := range specs {
			if s.ID != fmt.Sprintf("host-%04d/leaf", i) || s.Name != fmt.Sprint(i) || len(s.DNSNames) != 1 || s.DNSNames[0] != fmt.Sprint(i) {
				t.Fatalf("n=%d: position %d holds %+v", n, i, s)
			}
		}
	}
}
