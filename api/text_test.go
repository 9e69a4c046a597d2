package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every string an operation takes (path, query and header parameters,
// and every string of its request body at any depth: nested objects,
// array items, map values and keys, free-form fields) is refused with a
// 422 problem naming it when it holds U+0000 or invalid UTF-8, never a
// 500. The cases come from the served OpenAPI document, so an operation
// added later is covered without editing this test. Path IDs name no
// resource: the 422 (not a 404) shows that the check runs before any
// lookup.
func TestTextRefusedEverywhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.openAPI()

	cases := textCases(t, doc)
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.loc] = true
	}
	// The generator reached every kind of place.
	for _, loc := range []string{"path.id", "path.mac", "query.cursor", "query.label_selector", "header.If-Match",
		"body.name", "body.labels.env", "body.labels", "body.bmc.username", "body.macs[0]", "body[0].error",
		"body[0].data.note", "body[0].x_extra", "body.boot.cmdline", "body.project_ids[0]"} {
		require.True(t, seen[loc], "no case for %s", loc)
	}
	t.Logf("%d cases over %d locations", len(cases), len(seen))

	bases := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.with(t)
			if !bases[c.op] {
				// The base request is well formed: its answer is the
				// handler's (often a 404 for the missing ID), not a
				// malformed-body 400 and never a 500.
				bases[c.op] = true
				b := e.doRaw(c.base)
				require.NotEqual(t, 400, b.Code, "base request: %s", b)
				require.Less(t, b.Code, 500, "base request: %s", b)
				if b.Code == 422 {
					require.NotEqual(t, "validation failed", b.json(t)["detail"], "the base request breaks the schema: %s", b)
				}
			}
			got := e.doRaw(c.req)
			e.problem(got, 422, "https://rackcloud.dev/problems/validation")
			var p struct {
				Detail string `json:"detail"`
				Errors []struct {
					Location string `json:"location"`
					Message  string `json:"message"`
				} `json:"errors"`
			}
			require.NoError(t, json.Unmarshal(got.Body, &p))
			require.Contains(t, p.Detail, c.loc, got.String())
			i := slices.IndexFunc(p.Errors, func(d struct {
				Location string `json:"location"`
				Message  string `json:"message"`
			}) bool {
				return d.Location == c.loc
			})
			require.GreaterOrEqual(t, i, 0, "no error at %s: %s", c.loc, got)
			require.Contains(t, p.Errors[i].Message, c.msg, got.String())
		})
	}
}

// The body's bytes are checked before decoding, and valid text passes.
func TestTextEdgeCases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		name, body string
		code       int
		errs       []string // location: message
	}{
		{"valid text", `{"name":"uni","description":"café ☕ \ufffd \ufdd0 ﷐ �"}`, 201, nil},
		{"raw NUL byte", "{\"name\":\"x\",\"description\":\"a\x00\"}", 422, []string{"body: contains U+0000 (NUL)"}},
		{"invalid bytes in malformed JSON", "{\"name\":\"x\xff", 422, []string{"body: is not valid UTF-8"}},
		{"invalid bytes beside the mark", "{\"name\":\"x\",\"description\":\"\xff \uFDD0\"}", 422, []string{"body: is not valid UTF-8"}},
		{"invalid key", "{\"name\":\"x\",\"labels\":{\"a\xff\":\"b\"}}", 422, []string{"body.labels: a key is not valid UTF-8"}},
		{"NUL key", `{"name":"x","labels":{"a\u0000":"b"}}`, 422, []string{"body.labels: a key contains U+0000 (NUL)"}},
		{"every place", "{\"name\":\"x\",\"description\":\"\\u0000\",\"labels\":{\"a\":\"\xff\",\"b\":\"\\u0000\"}}", 422,
			[]string{"body.description: contains U+0000 (NUL)", "body.labels.a: is not valid UTF-8", "body.labels.b: contains U+0000 (NUL)"}},
		{"too large first", `{"name":"x","description":"\u0000` + strings.Repeat("a", 100<<10) + `"}`, 413, nil},
		{"malformed, valid bytes", `{"name":`, 400, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.with(t)
			r := e.do("POST", "/v1/regions", e.admin, []byte(c.body))
			require.Equal(t, c.code, r.Code, r.String())
			if c.code == 201 {
				require.Equal(t, "café ☕ \uFFFD \uFDD0 \uFDD0 \uFFFD", r.json(t)["description"], "stored as sent")
			}
			if c.errs == nil {
				return
			}
			e.problem(r, 422, "https://rackcloud.dev/problems/validation")
			var p struct {
				Detail string `json:"detail"`
				Errors []struct{ Location, Message string }
			}
			require.NoError(t, json.Unmarshal(r.Body, &p))
			var got []string
			for _, d := range p.Errors {
				got = append(got, d.Location+": "+d.Message)
			}
			require.Equal(t, c.errs, got)
			if len(c.errs) > 1 {
				require.Contains(t, p.Detail, fmt.Sprintf("(and %d more)", len(c.errs)-1))
			}
		})
	}
}

// rawRequest is a request whose body and URL are sent byte for byte.
type rawRequest struct {
	method, path string // path may hold escapes such as %00
	body         []byte // nil: none
	header       map[string]string
}

func (e *env) doRaw(rr rawRequest) resp {
	e.t.Helper()
	var body any
	if rr.body != nil {
		body = rr.body
	}
	var hdr []string
	for _, k := range slices.Sorted(maps.Keys(rr.header)) {
		hdr = append(hdr, k, rr.header[k])
	}
	return e.do(rr.method, rr.path, e.admin, body, hdr...)
}

// openAPI returns the served OpenAPI document.
func (e *env) openAPI() openAPIDoc {
	e.t.Helper()
	r := e.do("GET", "/openapi.json", "", nil)
	require.Equal(e.t, 200, r.Code)
	var doc openAPIDoc
	require.NoError(e.t, json.Unmarshal(r.Body, &doc))
	return doc
}

type openAPIDoc struct {
	Paths      map[string]map[string]openAPIOp `json:"paths"`
	Components struct {
		Schemas map[string]*schema `json:"schemas"`
	} `json:"components"`
}

type openAPIOp struct {
	OperationID string `json:"operationId"`
	Parameters  []struct {
		Name     string  `json:"name"`
		In       string  `json:"in"`
		Required bool    `json:"required"`
		Schema   *schema `json:"schema"`
	} `json:"parameters"`
	RequestBody *struct {
		Content map[string]struct {
			Schema *schema `json:"schema"`
		} `json:"content"`
	} `json:"requestBody"`
}

// schema is the part of a JSON Schema that request values are built from.
type schema struct {
	Ref                  string             `json:"$ref"`
	Type                 any                `json:"type"` // "string" or ["string", "null"]
	Format               string             `json:"format"`
	Enum                 []any              `json:"enum"`
	Examples             []any              `json:"examples"`
	Default              any                `json:"default"`
	Minimum              *float64           `json:"minimum"`
	Maximum              *float64           `json:"maximum"`
	MinLength            int                `json:"minLength"`
	Pattern              string             `json:"pattern"`
	Properties           map[string]*schema `json:"properties"`
	AdditionalProperties any                `json:"additionalProperties"` // bool or schema
	Items                *schema            `json:"items"`
}

func (s *schema) typ() string {
	switch t := s.Type.(type) {
	case string:
		return t
	case []any:
		for _, x := range t {
			if x != "null" {
				return x.(string)
			}
		}
	}
	if s.Properties != nil {
		return "object"
	}
	return "" // any value
}

// textCase is one request with one bad string, and where the 422 must
// say it is.
type textCase struct {
	name, op  string
	base, req rawRequest
	loc, msg  string
}

// field is a place in a body: a string, or a map whose keys are set.
type field struct {
	path []any // keys and indices from the root
	loc  string
	key  bool
}

// missingID names no resource.
const missingID = "00000000-0000-4000-8000-000000000000"

// placeholder is replaced by a bad string in the marshalled body.
const placeholder = "\uE000bad\uE000"

var badStrings = []struct {
	name      string
	json, url string // in a JSON string literal; in a URL
	header    string
	msg       string
}{
	{"NUL", `ok\u0000`, "ok%00", "", "U+0000 (NUL)"},
	{"invalid UTF-8", "ok\xff\xfe", "ok%FF%FE", "\"ok\xff\"", "not valid UTF-8"},
}

func textCases(t *testing.T, doc openAPIDoc) []textCase {
	var out []textCase
	g := &gen{schemas: doc.Components.Schemas}
	for _, path := range slices.Sorted(maps.Keys(doc.Paths)) {
		for _, method := range slices.Sorted(maps.Keys(doc.Paths[path])) {
			op := doc.Paths[path][method]
			base := rawRequest{method: strings.ToUpper(method), header: map[string]string{}}
			params := map[string]string{}
			for _, p := range op.Parameters {
				switch {
				case p.In == "path" && g.resolve(p.Schema).Format == "uuid":
					params[p.Name] = missingID
				case p.In == "path":
					params[p.Name] = fmt.Sprint(g.value(p.Schema, nil, "", nil))
				}
			}
			base.path = fillPath(path, params)
			var body any
			var fields []field
			if op.RequestBody != nil {
				s := op.RequestBody.Content["application/json"].Schema
				require.NotNil(t, s, "%s has a body that is not JSON", op.OperationID)
				body = g.value(s, nil, "body", &fields)
				b, err := json.Marshal(body)
				require.NoError(t, err)
				base.body = b
			}
			add := func(name, loc, msg string, req rawRequest) {
				out = append(out, textCase{name: op.OperationID + "/" + name, op: op.OperationID, base: base, req: req, loc: loc, msg: msg})
			}
			for _, bad := range badStrings {
				for _, p := range op.Parameters {
					if !stringish(g, p.Schema) {
						continue
					}
					loc := p.In + "." + p.Name
					req := base
					switch p.In {
					case "path":
						pp := maps.Clone(params)
						pp[p.Name] = bad.url
						req.path = fillPath(path, pp)
					case "query":
						req.path = base.path + "?" + p.Name + "=" + bad.url
					case "header":
						if bad.header == "" {
							continue // net/http refuses control characters in headers before any handler
						}
						req.header = map[string]string{p.Name: bad.header}
					default:
						continue
					}
					add(loc+"/"+bad.name, loc, bad.msg, req)
				}
				for _, f := range fields {
					req := base
					req.body = withBad(t, body, f, bad.json)
					add(f.loc+keyName(f)+"/"+bad.name, f.loc, bad.msg, req)
				}
			}
		}
	}
	return out
}

func keyName(f field) string {
	if f.key {
		return "{key}"
	}
	return ""
}

func fillPath(path string, params map[string]string) string {
	for k, v := range params {
		path = strings.ReplaceAll(path, "{"+k+"}", v)
	}
	return path
}

func stringish(g *gen, s *schema) bool {
	s = g.resolve(s)
	return s.typ() == "string" || (s.typ() == "array" && s.Items != nil && g.resolve(s.Items).typ() == "string")
}

// withBad returns body, marshalled, with the field set to the bad string.
func withBad(t *testing.T, body any, f field, bad string) []byte {
	var v any // a deep copy
	b, err := json.Marshal(body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &v))
	set := func(parent any, k any, x any) {
		switch p := parent.(type) {
		case map[string]any:
			p[k.(string)] = x
		case []any:
			p[k.(int)] = x
		}
	}
	get := func(parent any, k any) any {
		switch p := parent.(type) {
		case map[string]any:
			return p[k.(string)]
		case []any:
			return p[k.(int)]
		}
		return nil
	}
	root := &[]any{v}
	var parent any = *root
	var k any = 0
	for _, step := range f.path {
		parent, k = get(parent, k), step
	}
	if f.key {
		get(parent, k).(map[string]any)[placeholder] = "x"
	} else {
		set(parent, k, placeholder)
	}
	b, err = json.Marshal((*root)[0])
	require.NoError(t, err)
	q, _ := json.Marshal(placeholder)
	require.Equal(t, 1, bytes.Count(b, q), "%s", b)
	return bytes.Replace(b, q, []byte(`"`+bad+`"`), 1)
}

// gen builds a valid-looking value of a schema from its enums, examples,
// defaults, formats and bounds, and lists its string fields.
type gen struct {
	schemas map[string]*schema
}

func (g *gen) resolve(s *schema) *schema {
	for s != nil && s.Ref != "" {
		s = g.schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
	}
	if s == nil {
		return &schema{}
	}
	return s
}

// value returns a value of s; example is a value given by an enclosing
// array's example. Fields are appended to fields (nil: not wanted).
func (g *gen) value(s *schema, example any, loc string, fields *[]field, path ...any) any {
	s = g.resolve(s)
	addField := func(f field) {
		if fields != nil {
			f.path = slices.Clone(path)
			*fields = append(*fields, f)
		}
	}
	if example == nil && len(s.Examples) > 0 {
		example = s.Examples[0]
	}
	switch s.typ() {
	case "string":
		addField(field{loc: loc})
		switch {
		case len(s.Enum) > 0:
			return s.Enum[0]
		case example != nil:
			return example
		case s.Default != nil:
			return s.Default
		}
		switch s.Format {
		case "uuid":
			return missingID
		case "date-time":
			return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC3339)
		case "ipv4":
			return "10.77.0.21"
		case "email":
			return "ops@example.com"
		case "uri":
			return "http://example.com/"
		}
		if s.Pattern != "" {
			return matching(s.Pattern)
		}
		return "x" + strings.Repeat("x", max(0, s.MinLength-1))
	case "integer", "number":
		switch {
		case example != nil:
			return example
		case s.Default != nil:
			return s.Default
		case s.Minimum != nil && *s.Minimum > 1:
			return *s.Minimum
		case s.Maximum != nil && *s.Maximum < 1:
			return *s.Maximum
		}
		return 1
	case "boolean":
		return false
	case "array":
		var ex any
		if l, ok := example.([]any); ok && len(l) > 0 {
			ex = l[0]
		}
		return []any{g.value(s.Items, ex, loc+"[0]", fields, slices.Concat(path, []any{0})...)}
	case "object":
		obj := map[string]any{}
		for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
			obj[name] = g.value(s.Properties[name], nil, loc+"."+name, fields, slices.Concat(path, []any{name})...)
		}
		switch ap := s.AdditionalProperties.(type) {
		case map[string]any: // a map: one entry, and its keys
			addField(field{loc: loc, key: true})
			b, _ := json.Marshal(ap)
			var vs schema
			_ = json.Unmarshal(b, &vs)
			obj["env"] = g.value(&vs, nil, loc+".env", fields, slices.Concat(path, []any{"env"})...)
		case bool:
			if ap { // extra fields are accepted: they are checked too
				addField(field{loc: loc, key: true})
				obj["x_extra"] = g.value(&schema{Type: "string"}, nil, loc+".x_extra", fields, slices.Concat(path, []any{"x_extra"})...)
			}
		}
		return obj
	}
	// Any JSON value (a free-form field): an object with a string.
	addField(field{loc: loc, key: true})
	return map[string]any{"note": g.value(&schema{Type: "string"}, nil, loc+".note", fields, slices.Concat(path, []any{"note"})...)}
}

// matching returns a short string that the regular expression matches:
// the first choice of every alternative and class, the fewest repeats.
func matching(pattern string) string {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		panic(err)
	}
	var b strings.Builder
	var walk func(*syntax.Regexp)
	walk = func(re *syntax.Regexp) {
		switch re.Op {
		case syntax.OpLiteral:
			b.WriteString(string(re.Rune))
		case syntax.OpCharClass:
			b.WriteRune(re.Rune[0])
		case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
			b.WriteByte('x')
		case syntax.OpCapture, syntax.OpPlus:
			walk(re.Sub[0])
		case syntax.OpRepeat:
			for range re.Min {
				walk(re.Sub[0])
			}
		case syntax.OpConcat:
			for _, s := range re.Sub {
				walk(s)
			}
		case syntax.OpAlternate:
			walk(re.Sub[0])
		}
	}
	walk(re)
	return b.String()
}
