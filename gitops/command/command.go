// Package command reads /nest commands in pull request comments. Webhook
// intake (which deliveries become jobs) and the bot (what a job does) both
// read them here, so they never disagree on what is a command.
package command

import "strings"

// Fields reads a comment body as a /nest command: its first line, split
// into words, whose first word is exactly /nest. It returns the words after
// /nest (none for a bare /nest) and whether the body is a command at all.
func Fields(body string) (args []string, ok bool) {
	line, _, _ := strings.Cut(body, "\n")
	words := strings.Fields(line)
	if len(words) == 0 || words[0] != "/nest" {
		return nil, false
	}
	return words[1:], true
}
