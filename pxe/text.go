package pxe

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds of the text cleanText keeps, in bytes: peers' strings that end up
// in events and logs (the API takes up to 4096 bytes in file, detail and
// error), and the strings inside a callback's JSON body.
const (
	maxPeerText     = 1024
	maxCallbackText = 8 << 10
)

// cleanText makes text that came from the network safe to record and log:
// valid UTF-8 (invalid bytes become U+FFFD) without control characters.
// Trailing NULs (C strings: the UEFI firmware's TFTP error message) are
// trimmed, other NULs dropped, and every other C0 or C1 control character
// (tab and newline included) becomes a space. The result is at most max
// bytes (cut at a rune boundary, ending in "…" when cut). cleanText is
// idempotent.
func cleanText(s string, max int) string {
	s = strings.TrimRight(s, "\x00")
	if len(s) <= max && isClean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), max))
	for _, r := range s { // ranging over a string yields U+FFFD for invalid bytes
		switch {
		case r == 0:
			continue
		case unicode.IsControl(r):
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > max {
			return cut(b.String(), max)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isClean reports whether s is valid UTF-8 without control characters.
func isClean(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || unicode.IsControl(r) {
			return false
		}
		i += n
	}
	return true
}

// cut shortens clean text s so that s + "…" fits in max bytes.
func cut(s string, max int) string {
	const ellipsis = "…"
	n := max - len(ellipsis)
	switch {
	case n < 0:
		return ""
	case n >= len(s):
		return s + ellipsis
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + ellipsis
}

// cleanJSON rewrites a valid JSON document so that every string in it
// (object keys included) went through cleanText and the kernel command
// line's boot token is redacted. A document it cannot parse is returned
// as a JSON string of its cleaned text.
func cleanJSON(doc []byte) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		v = string(doc)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(cleanValue(v)); err != nil {
		return nil
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func cleanValue(v any) any {
	switch v := v.(type) {
	case string:
		return redactToken(cleanText(v, maxCallbackText))
	case []any:
		for i := range v {
			v[i] = cleanValue(v[i])
		}
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[cleanText(k, maxPeerText)] = cleanValue(x)
		}
		return out
	}
	return v
}

// redactToken hides the value of every ParamToken= word in s (a booted
// image reporting its kernel command line), so that boot tokens never
// reach events, the API or logs.
func redactToken(s string) string {
	const key = ParamToken + "="
	if !strings.Contains(s, key) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, key)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+len(key)])
		s = s[i+len(key):]
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		if end > 0 {
			b.WriteString(redacted)
		}
		s = s[end:]
	}
}

// redacted replaces secrets in recorded text.
const redacted = "REDACTED"
