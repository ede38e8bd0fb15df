package pki

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestSecretsNixRoundTrip(t *testing.T) {
	in := map[string][]string{
		"derived/cp-1/kubernetes-apiserver.key.age": {"age1abc", "ssh-ed25519 AAAAC3Nza host"},
		"ca/kubernetes.key.age":                     {"age1abc"},
		`odd "name" with \ and ${x}.age`:            {"a\nb"},
		"no-recipients.age":                         {},
	}
	out := RenderSecretsNix(in)
	got, err := ParseSecretsNix("secrets.nix", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !maps.EqualFunc(in, got, slices.Equal) {
		t.Fatalf("round trip:\n got %q\nwant %q", got, in)
	}
	// Deterministic, sorted by path, one line per file.
	if again := RenderSecretsNix(got); string(again) != string(out) {
		t.Fatal("rendering is not deterministic")
	}
	want := `  "ca/kubernetes.key.age".publicKeys = [ "age1abc" ];` + "\n" +
		`  "derived/cp-1/kubernetes-apiserver.key.age".publicKeys = [ "age1abc" "ssh-ed25519 AAAAC3Nza host" ];` + "\n"
	if !strings.Contains(string(out), want) {
		t.Fatalf("layout:\n%s", out)
	}
}

func TestParseSecretsNixForms(t *testing.T) {
	src := `# agenix rules, written by hand
/* a block
   comment */
{
  "a.age".publicKeys = [ "age1x" "ssh-ed25519 AAAA" ];
  "a.age".armor = true;
  "b.age" = { publicKeys = [
      "age1y"   # the admin
    ]; armor = false; };
}
`
	got, err := ParseSecretsNix("secrets.nix", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"a.age": {"age1x", "ssh-ed25519 AAAA"}, "b.age": {"age1y"}}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("got %q", got)
	}
}

func TestParseSecretsNixErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"let admin = \"age1x\"; in { }", "s.nix:1:1: let bindings"},
		{"{\n  \"a.age\".publicKeys = [ admin ];\n}", "s.nix:2:26: a variable"},
		{"{\n  \"a.age\".publicKeys = [ \"${x}\" ];\n}", "s.nix:2:27: string interpolation"},
		{"{ \"a.age\".publicKeys = [ \"x\" ]; ", "s.nix:1:33: want a quoted .age path or }, found the end"},
		{"{ \"a.age\".publicKeys = [ \"x\" ]; \"a.age\".publicKeys = [ ]; }", "publicKeys given twice"},
		{"{ \"a.age\".armor = true; }", "s.nix:1:3: this rule has no publicKeys"},
		{"{ \"a.age\".owner = \"root\"; }", "s.nix:1:11: an unknown attribute"},
		{"{ \"a.age\".publicKeys = [ \"x\" ] ++ [ ]; }", "s.nix:1:32: an unexpected character"},
		{"{ \"unterminated }", "unterminated string"},
		{"{ } { }", "after the closing }"},
		{"/* open", "unterminated /* comment"},
		{"{ \"a.age\".publicKeys = \"AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQ\"; }", "s.nix:1:24: want [, found a string"},
	} {
		_, err := ParseSecretsNix("s.nix", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
		// No error repeats the file's text: a name, a string, an attribute.
		for _, text := range []string{"QQQQQQQQ", "admin", "owner", "root", "\"x\"", "a.age"} {
			if err != nil && strings.Contains(err.Error(), text) {
				t.Errorf("%q: the error repeats the file's %s: %v", tc.src, text, err)
			}
		}
	}
}

// FuzzParseSecretsNix: any input either fails with a positioned error or
// parses to rules that render and parse back to the same rules.
func FuzzParseSecretsNix(f *testing.F) {
	f.Add([]byte(RenderSecretsNix(map[string][]string{"ca/kubernetes.key.age": {"age1abc", "ssh-ed25519 AAAA"}})))
	f.Add([]byte(`{ "b.age" = { publicKeys = [ "x" ]; armor = true; }; }`))
	f.Add([]byte("{ \"a\\\"b\".publicKeys = [ \"\\n\\t\\$\" ]; } # end"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := ParseSecretsNix("fuzz.nix", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.nix:") {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		back, err := ParseSecretsNix("fuzz.nix", RenderSecretsNix(rules))
		if err != nil {
			t.Fatalf("rendered rules do not parse: %v", err)
		}
		if !maps.EqualFunc(rules, back, slices.Equal) {
			t.Fatalf("round trip:\n got %q\nwant %q", back, rules)
		}
	})
}
