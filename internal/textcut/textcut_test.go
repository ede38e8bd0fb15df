package textcut

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLimit(t *testing.T) {
	const mark = " ... (cut)" // 10 bytes
	for _, tc := range []struct {
		name  string
		s     string
		limit int
		mark  string
		want  string
	}{
		{"shorter", "abc", 10, mark, "abc"},
		{"exact length", "abcdefghij", 10, mark, "abcdefghij"},
		{"exact length multibyte", "héllo", 6, mark, "héllo"},
		{"one over", "abcdefghijklmnopqrstu", 20, mark, "abcdefghij" + mark},
		{"empty", "", 0, mark, ""},
		{"limit 0", "abc", 0, mark, ""},
		{"limit 0 unmarked", "abc", 0, "", ""},
		{"no room for the mark", "abcdefghijkl", 5, mark, "abcde"},
		{"no room for the mark, mid-rune", "aé€", 4, mark, "aé"},
		{"mark fills the limit", "abcdefghijk", 10, mark, mark},
		// "é" is 2 bytes, "€" 3, "𝄞" 4: a cut inside one backs up to its start.
		{"cut before a 2-byte rune's second byte", "abcé" + strings.Repeat("x", 20), 14, mark, "abc" + mark},
		{"cut after a 2-byte rune", "abcé" + strings.Repeat("x", 20), 15, mark, "abcé" + mark},
		{"cut inside a 3-byte rune", "a€" + strings.Repeat("x", 20), 12, mark, "a" + mark},
		{"cut inside a 4-byte rune", "𝄞𝄞" + strings.Repeat("x", 20), 17, mark, "𝄞" + mark},
		{"cut after a 4-byte rune", "𝄞𝄞" + strings.Repeat("x", 20), 18, mark, "𝄞𝄞" + mark},
		{"all one rune cut away", "€€€€€€", 12, mark, mark},
		{"other mark", "ünïcödé text", 11, "…(cut)", "ün…(cut)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Limit(tc.s, tc.limit, tc.mark)
			if got != tc.want {
				t.Errorf("Limit(%q, %d, %q) = %q, want %q", tc.s, tc.limit, tc.mark, got, tc.want)
			}
			if len(tc.s) > tc.limit && len(got) > tc.limit {
				t.Errorf("Limit(%q, %d, %q) = %q: %d bytes, over the limit", tc.s, tc.limit, tc.mark, got, len(got))
			}
			if !utf8.ValidString(got) {
				t.Errorf("Limit(%q, %d, %q) = %q: not valid UTF-8", tc.s, tc.limit, tc.mark, got)
			}
		})
	}
}
