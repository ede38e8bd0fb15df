// Package textcut bounds text to a number of bytes, as the places that
// hold it (a check run's annotation, a Markdown line, an error message)
// count them, without splitting a character.
package textcut

import "unicode/utf8"

// Limit returns s when it holds at most limit bytes; otherwise as much of
// s as fits before mark, cut at a rune boundary, then mark, in at most
// limit bytes. When limit has no room for mark, it is s cut to limit
// bytes at a rune boundary, unmarked.
func Limit(s string, limit int, mark string) string {
	if len(s) <= limit {
		return s
	}
	if limit < len(mark) {
		mark = ""
	}
	i := max(limit-len(mark), 0)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}
