package vmctl

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

func TestParseLabelExpr(t *testing.T) {
	for name, tc := range map[string]struct {
		in   string
		want LabelExpr
		str  string // String(), when it differs from in
	}{
		"exists":          {in: "ssd", want: LabelExpr{Key: "ssd", Op: OpExists}},
		"not exists":      {in: "!spot", want: LabelExpr{Key: "spot", Op: OpNotExists}},
		"not exists sp":   {in: " ! spot ", want: LabelExpr{Key: "spot", Op: OpNotExists}, str: "!spot"},
		"equals":          {in: "tier=db", want: LabelExpr{Key: "tier", Op: OpEquals, Values: []string{"db"}}},
		"double equals":   {in: "tier==db", want: LabelExpr{Key: "tier", Op: OpEquals, Values: []string{"db"}}, str: "tier=db"},
		"not equals":      {in: "tier != db", want: LabelExpr{Key: "tier", Op: OpNotEquals, Values: []string{"db"}}, str: "tier!=db"},
		"in":              {in: "zone in (a,b)", want: LabelExpr{Key: "zone", Op: OpIn, Values: []string{"a", "b"}}},
		"notin spaces":    {in: "gpu notin (a100, h100)", want: LabelExpr{Key: "gpu", Op: OpNotIn, Values: []string{"a100", "h100"}}, str: "gpu notin (a100,h100)"},
		"in no space":     {in: "zone in(a)", want: LabelExpr{Key: "zone", Op: OpIn, Values: []string{"a"}}, str: "zone in (a)"},
		"prefixed key":    {in: "rackcloud.io/gpu=a100", want: LabelExpr{Key: "rackcloud.io/gpu", Op: OpEquals, Values: []string{"a100"}}},
		"dots and dashes": {in: "disk_kind=nvme-2.0", want: LabelExpr{Key: "disk_kind", Op: OpEquals, Values: []string{"nvme-2.0"}}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseLabelExpr(tc.in)
			require.NoError(t, err)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("ParseLabelExpr(%q) (-want +got):\n%s", tc.in, d)
			}
			str := tc.str
			if str == "" {
				str = tc.in
			}
			require.Equal(t, str, got.String())
		})
	}
}

func TestParseLabelExprErrors(t *testing.T) {
	long := strings.Repeat("a", 64)
	for name, tc := range map[string]struct{ in, want string }{
		"empty":         {"  ", `label expression "  ": empty`},
		"missing paren": {"x in (", `label expression "x in (": missing )`},
		"no open paren": {"x in a,b", `label expression "x in a,b": want ( after in`},
		"empty value":   {"x in (a,,b)", `label expression "x in (a,,b)": empty value`},
		"empty set":     {"x notin ()", `label expression "x notin ()": empty value`},
		"missing value": {"tier=", `label expression "tier=": empty value`},
		"bad operator":  {"tier > 3", `label expression "tier > 3": unexpected "> 3" after key "tier" (want =, ==, !=, in or notin)`},
		"no key":        {"=db", `label expression "=db": empty key`},
		"bang no key":   {"!", `label expression "!": empty key`},
		"bad key start": {"-x", `label expression "-x": key "-x" does not start with a letter or digit`},
		"bad value":     {"tier=d b", `label expression "tier=d b": value "d b" has ' ' (want letters, digits, - _ .)`},
		"two slashes":   {"a/b/c", `label expression "a/b/c": key name "b/c" has '/' (want letters, digits, - _ .)`},
		"long key":      {long, `label expression "` + long + `": key "` + long + `" is longer than 63 characters`},
		"long value":    {"k=" + long, `label expression "k=` + long + `": value "` + long + `" is longer than 63 characters`},
		"empty prefix":  {"/gpu", `label expression "/gpu": empty key prefix`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseLabelExpr(tc.in)
			require.Error(t, err)
			require.Equal(t, tc.want, err.Error())
			require.ErrorIs(t, err, rackcloud.ErrInvalid)
		})
	}
}

func TestLabelExprMatch(t *testing.T) {
	labels := map[string]string{"ssd": "", "tier": "db", "zone": "a"}
	for expr, want := range map[string]bool{
		"ssd": true, "spot": false, "!spot": true, "!ssd": false,
		"tier=db": true, "tier=web": false, "tier!=db": false, "tier!=web": true, "owner!=x": true,
		"zone in (a,b)": true, "zone in (c)": false, "gpu in (a100)": false,
		"zone notin (a)": false, "zone notin (b,c)": true, "gpu notin (a100)": true,
	} {
		e, err := ParseLabelExpr(expr)
		require.NoError(t, err)
		require.Equal(t, want, e.Match(labels), expr)
	}
}

func FuzzParseLabelExpr(f *testing.F) {
	for _, s := range []string{"ssd", "!spot", "tier=db", "tier==db", "tier!=db", "zone in (a,b)",
		"gpu notin (a100, h100)", "x in (", "a/b=c", "!=", "k in ()", " k = v "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseLabelExpr(s)
		if err != nil {
			return
		}
		again, err := ParseLabelExpr(e.String())
		if err != nil {
			t.Fatalf("ParseLabelExpr(%q).String() = %q does not parse: %v", s, e.String(), err)
		}
		if d := cmp.Diff(e, again); d != "" {
			t.Fatalf("%q: round trip through %q (-first +again):\n%s", s, e.String(), d)
		}
	})
}
