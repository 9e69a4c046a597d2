package pxe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestCleanText(t *testing.T) {
	tests := map[string]struct {
		in   string
		max  int
		want string
	}{
		"clean":                 {"snponly.efi", 64, "snponly.efi"},
		"uefi abort":            {"sending block 0: code=8, error: User aborted the transfer\x00", 128, "sending block 0: code=8, error: User aborted the transfer"},
		"several trailing NULs": {"abc\x00\x00\x00", 64, "abc"},
		"inner NUL":             {"a\x00b", 64, "ab"},
		"controls":              {"a\tb\nc\x1b[2J\x7fd", 64, "a b c [2J d"},
		"C1 control":            {"a\u0085b\u009bc", 64, "a b c"},
		"invalid UTF-8":         {"caf\xe9 \xff", 64, "caf\uFFFD \uFFFD"},
		"unicode kept":          {"nœud-é 节点", 64, "nœud-é 节点"},
		"cut":                   {strings.Repeat("a", 20), 10, "aaaaaaa…"},
		"cut at a rune":         {"ééééé", 6, "é…"},
		"cut after cleaning":    {"\xff\xff\xff\xff", 8, "\uFFFD…"},
		"empty":                 {"", 8, ""},
		"only NULs":             {"\x00\x00", 8, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := cleanText(tc.in, tc.max)
			require.Equal(t, tc.want, got)
			require.Equal(t, got, cleanText(got, tc.max), "idempotent")
		})
	}
}

// FuzzCleanText: whatever the peer sends, the result is valid UTF-8
// without control characters, within the bound, and cleaning it again
// changes nothing.
func FuzzCleanText(f *testing.F) {
	for _, s := range []string{"", "User aborted the transfer\x00", "a\x00b\xff\u0085\n", "ééé", strings.Repeat("\xf0\x9f\x98", 30)} {
		f.Add(s, 16)
		f.Add(s, 1024)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = (max%2048 + 2048) % 2048 // 0..2047, whatever the sign
		got := cleanText(s, max)
		require.True(t, utf8.ValidString(got), "%q -> %q", s, got)
		require.LessOrEqual(t, len(got), max)
		for _, r := range got {
			require.False(t, unicode.IsControl(r), "%q -> %q has %U", s, got, r)
		}
		require.Equal(t, got, cleanText(got, max), "idempotent")
		if isClean(s) && len(s) <= max {
			require.Equal(t, s, got, "clean text is left alone")
		}
	})
}

// FuzzCleanJSON: a callback body that is valid JSON stays valid JSON, and
// none of its strings keeps a NUL, invalid UTF-8 or a boot token.
func FuzzCleanJSON(f *testing.F) {
	for _, s := range []string{`{"mac":"52:54:00:aa:01:01"}`, `{"x":"a\u0000b","\u0001k":["\ud800",1e400,null]}`,
		`"rackcloud.token=abc rackcloud.token="`, `[1,2.5,true]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if !json.Valid(doc) {
			return
		}
		got := cleanJSON(doc)
		require.True(t, json.Valid(got), "%q -> %q", doc, got)
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case string:
				require.Equal(t, v, cleanText(v, maxCallbackText))
				for _, w := range strings.Split(v, " ") {
					if val, ok := strings.CutPrefix(w, ParamToken+"="); ok && val != "" {
						require.True(t, strings.HasPrefix(val, redacted), "%q", v)
					}
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			case map[string]any:
				for k, x := range v {
					walk(k)
					walk(x)
				}
			}
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(got))
		dec.UseNumber()
		require.NoError(t, dec.Decode(&v))
		walk(v)
		require.Equal(t, string(got), string(cleanJSON(got)), "idempotent")
	})
}
