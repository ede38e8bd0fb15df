package aws

import (
	"path"
	"sort"
	"time"
)

// parseAWSTime reads the timestamps EC2 returns as strings (image creation dates).
func parseAWSTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.000Z"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, &time.ParseError{Layout: time.RFC3339, Value: s}
}

func sortRuleKeys(keys []ruleKey) {
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.proto != b.proto {
			return a.proto < b.proto
		}
		if a.from != b.from {
			return a.from < b.from
		}
		if a.to != b.to {
			return a.to < b.to
		}
		return a.cidr < b.cidr
	})
}

// matchName matches an AMI name against a pattern where * is any run of characters.
func matchName(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}
