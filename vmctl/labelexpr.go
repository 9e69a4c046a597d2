package vmctl

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rackcloud/rackcloud"
)

// Label expression operators. Forbidden labels are written with
// OpNotEquals, OpNotIn or OpNotExists.
const (
	OpExists    = "exists"  // ssd
	OpNotExists = "!exists" // !spot
	OpEquals    = "="       // tier=db, tier==db
	OpNotEquals = "!="      // tier!=db (also true when tier is unset)
	OpIn        = "in"      // zone in (a,b)
	OpNotIn     = "notin"   // gpu notin (a100,h100) (also true when gpu is unset)
)

// maxLabelPart is the longest key part (prefix or name) or value.
const maxLabelPart = 63

// LabelExpr is one requirement on a host's labels, as in a Kubernetes label
// selector: Key, an operator (Op* constants) and the values it compares
// with (one for = and !=, at least one for in and notin, none otherwise).
type LabelExpr struct {
	Key    string
	Op     string
	Values []string
}

// LabelExprError says why a label expression does not parse. It unwraps to
// rackcloud.ErrInvalid.
type LabelExprError struct {
	Expr   string
	Reason string
}

func (e *LabelExprError) Error() string {
	return fmt.Sprintf("label expression %q: %s", e.Expr, e.Reason)
}

// Unwrap returns rackcloud.ErrInvalid: a bad expression is a bad request.
func (e *LabelExprError) Unwrap() error { return rackcloud.ErrInvalid }

// ParseLabelExpr parses one requirement: `ssd` (exists), `!spot` (does
// not exist), `tier=db` or `tier==db`, `tier!=db`, `zone in (a,b)`,
// `gpu notin (a100, h100)`. Spaces around operators and values are
// ignored. A key is an optional prefix and a name separated by one '/',
// each 1 to 63 letters, digits, '-', '_' or '.' starting with a letter or
// digit; a value is 1 to 63 of the same characters. The error is a
// *LabelExprError.
func ParseLabelExpr(s string) (LabelExpr, error) {
	fail := func(format string, args ...any) (LabelExpr, error) {
		return LabelExpr{}, &LabelExprError{Expr: s, Reason: fmt.Sprintf(format, args...)}
	}
	t := strings.TrimSpace(s)
	if t == "" {
		return fail("empty")
	}
	if rest, ok := strings.CutPrefix(t, "!"); ok && !strings.HasPrefix(rest, "=") {
		key := strings.TrimSpace(rest)
		if err := checkKey(key); err != "" {
			return fail("%s", err)
		}
		return LabelExpr{Key: key, Op: OpNotExists}, nil
	}
	i := 0
	for i < len(t) && (isLabelChar(t[i]) || t[i] == '/') {
		i++
	}
	key, rest := t[:i], strings.TrimSpace(t[i:])
	if err := checkKey(key); err != "" {
		return fail("%s", err)
	}
	e := LabelExpr{Key: key}
	switch {
	case rest == "":
		e.Op = OpExists
		return e, nil
	case strings.HasPrefix(rest, "=="):
		e.Op, rest = OpEquals, rest[2:]
	case strings.HasPrefix(rest, "!="):
		e.Op, rest = OpNotEquals, rest[2:]
	case strings.HasPrefix(rest, "="):
		e.Op, rest = OpEquals, rest[1:]
	default:
		word := rest
		if j := strings.IndexAny(rest, " \t("); j >= 0 {
			word = rest[:j]
		}
		if word != OpIn && word != OpNotIn {
			return fail("unexpected %q after key %q (want =, ==, !=, in or notin)", rest, key)
		}
		e.Op, rest = word, strings.TrimSpace(rest[len(word):])
		set, ok := strings.CutPrefix(rest, "(")
		if !ok {
			return fail("want ( after %s", word)
		}
		set, ok = strings.CutSuffix(strings.TrimSpace(set), ")")
		if !ok {
			return fail("missing )")
		}
		for v := range strings.SplitSeq(set, ",") {
			v = strings.TrimSpace(v)
			if err := checkValue(v); err != "" {
				return fail("%s", err)
			}
			e.Values = append(e.Values, v)
		}
		return e, nil
	}
	v := strings.TrimSpace(rest)
	if err := checkValue(v); err != "" {
		return fail("%s", err)
	}
	e.Values = []string{v}
	return e, nil
}

// MustParseLabelExprs parses each of ss and panics on the first bad one:
// for tests and literals in code.
func MustParseLabelExprs(ss ...string) []LabelExpr {
	out := make([]LabelExpr, len(ss))
	for i, s := range ss {
		e, err := ParseLabelExpr(s)
		if err != nil {
			panic(err)
		}
		out[i] = e
	}
	return out
}

func isLabelChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

func isAlnum(c byte) bool { return isLabelChar(c) && c != '-' && c != '_' && c != '.' }

// checkPart returns why p is not a key part or value, or "".
func checkPart(what, p string) string {
	switch {
	case p == "":
		return "empty " + what
	case len(p) > maxLabelPart:
		return fmt.Sprintf("%s %q is longer than %d characters", what, p, maxLabelPart)
	case !isAlnum(p[0]):
		return fmt.Sprintf("%s %q does not start with a letter or digit", what, p)
	}
	for i := 0; i < len(p); i++ {
		if !isLabelChar(p[i]) {
			return fmt.Sprintf("%s %q has %q (want letters, digits, - _ .)", what, p, p[i])
		}
	}
	return ""
}

func checkKey(k string) string {
	prefix, name, ok := strings.Cut(k, "/")
	if !ok {
		return checkPart("key", k)
	}
	if err := checkPart("key prefix", prefix); err != "" {
		return err
	}
	return checkPart("key name", name)
}

func checkValue(v string) string { return checkPart("value", v) }

// Match reports whether labels meet the requirement. != and notin match
// labels without the key, as in Kubernetes.
func (e LabelExpr) Match(labels map[string]string) bool {
	v, ok := labels[e.Key]
	switch e.Op {
	case OpExists:
		return ok
	case OpNotExists:
		return !ok
	case OpEquals:
		return ok && len(e.Values) == 1 && v == e.Values[0]
	case OpNotEquals:
		return !ok || len(e.Values) != 1 || v != e.Values[0]
	case OpIn:
		return ok && slices.Contains(e.Values, v)
	case OpNotIn:
		return !ok || !slices.Contains(e.Values, v)
	}
	return false
}

// String writes e in the form ParseLabelExpr reads back to e.
func (e LabelExpr) String() string {
	switch e.Op {
	case OpExists:
		return e.Key
	case OpNotExists:
		return "!" + e.Key
	case OpEquals, OpNotEquals:
		return e.Key + e.Op + strings.Join(e.Values, ",")
	default:
		return e.Key + " " + e.Op + " (" + strings.Join(e.Values, ",") + ")"
	}
}
