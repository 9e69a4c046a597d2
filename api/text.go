package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5/pgconn"
)

// Text the API stores must be valid UTF-8 without U+0000: PostgreSQL
// refuses NUL in text and jsonb, and encoding/json silently turns
// invalid bytes into U+FFFD, so neither may reach a handler. checkText
// refuses both with a 422 naming the field, for every operation, before
// the handler (and so before any lookup): its parameters (path, query,
// header), the raw body, and every string of the decoded body at any
// depth (object keys, labels, free-form fields).

const (
	msgNUL     = "contains U+0000 (NUL)"
	msgInvalid = "is not valid UTF-8"
	// maxTextErrors caps the details of one refusal.
	maxTextErrors = 20
)

// invalidMark stands for invalid bytes of a JSON body while it is decoded
// to find where they are: a noncharacter (U+FDD0). A body with invalid
// bytes that holds the mark already is refused as a whole.
const invalidMark = "\uFDD0"

// checkText is the middleware that refuses NUL and invalid UTF-8.
func (a *API) checkText(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	var c textCheck
	for _, p := range op.Parameters {
		loc := p.In + "." + p.Name
		switch p.In {
		case "path":
			c.check(loc, ctx.Param(p.Name))
		case "query":
			u := ctx.URL()
			for _, v := range u.Query()[p.Name] {
				c.check(loc, v)
			}
		case "header":
			ctx.EachHeader(func(name, v string) {
				if strings.EqualFold(name, p.Name) {
					c.check(loc, v)
				}
			})
		}
	}
	if op.RequestBody != nil {
		var body []byte
		var ok bool
		ctx, body, ok = readBodyAhead(ctx)
		if ok {
			a.checkBody(&c, ctx.Header("Content-Type"), body)
		}
	}
	if len(c.errs) > 0 {
		_ = huma.WriteErr(a.huma, ctx, http.StatusUnprocessableEntity, c.detail(), c.errs[:min(len(c.errs), maxTextErrors)]...)
		return
	}
	next(ctx)
}

// textCheck collects what is wrong with a request's strings.
type textCheck struct {
	errs []error
	// marked: invalidMark stands for invalid bytes in the strings.
	marked bool
}

// detail says in one line what is wrong: the first place and how many
// more.
func (c *textCheck) detail() string {
	d := c.errs[0].(*huma.ErrorDetail)
	s := d.Location + " " + d.Message
	if n := len(c.errs) - 1; n > 0 {
		s += fmt.Sprintf(" (and %d more)", n)
	}
	return "text must be valid UTF-8 without U+0000: " + s
}

func (c *textCheck) add(loc, msg string) {
	c.errs = append(c.errs, &huma.ErrorDetail{Location: loc, Message: msg})
}

// check adds what is wrong with s at loc.
func (c *textCheck) check(loc, s string) {
	if m := c.fault(s); m != "" {
		c.add(loc, m)
	}
}

// fault says what is wrong with s, or "".
func (c *textCheck) fault(s string) string {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return msgNUL
	case !utf8.ValidString(s) || (c.marked && strings.Contains(s, invalidMark)):
		return msgInvalid
	}
	return ""
}

// walk checks every string in v, object keys included, naming each by
// its location as huma does (body.labels.env, body[3].error).
func (c *textCheck) walk(loc string, v any) {
	switch v := v.(type) {
	case string:
		c.check(loc, v)
	case []any:
		for i, e := range v {
			c.walk(fmt.Sprintf("%s[%d]", loc, i), e)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if m := c.fault(k); m != "" {
				// The location does not echo a broken key.
				c.add(loc, "a key "+m)
				continue
			}
			c.walk(loc+"."+k, v[k])
		}
	case map[any]any: // CBOR
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = e
		}
		c.walk(loc, m)
	}
}

// readBodyAhead reads the body (up to the operation's limit) and returns a
// context that replays it to huma. ok is false when the body could not be
// read whole: huma then reads the rest and answers the error (413, 408).
func readBodyAhead(ctx huma.Context) (huma.Context, []byte, bool) {
	r := ctx.BodyReader()
	if r == nil {
		return ctx, nil, false
	}
	op := ctx.Operation()
	if op.BodyReadTimeout > 0 {
		_ = ctx.SetReadDeadline(time.Now().Add(op.BodyReadTimeout))
	}
	limit := op.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	b, err := io.ReadAll(io.LimitReader(r, limit))
	if err != nil || int64(len(b)) >= limit {
		rest := r
		if err != nil {
			rest = errReader{err}
		}
		return bodyContext{ctx, io.MultiReader(bytes.NewReader(b), rest)}, b, false
	}
	return bodyContext{ctx, bytes.NewReader(b)}, b, true
}

// bodyContext replays a body read ahead.
type bodyContext struct {
	humaContext
	body io.Reader
}

// humaContext names the embedded context: embedding huma.Context itself
// would make a field Context that hides its method Context.
type humaContext interface{ huma.Context }

func (c bodyContext) BodyReader() io.Reader { return c.body }
func (c bodyContext) Unwrap() huma.Context  { return c.humaContext }

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// checkBody finds NUL and invalid UTF-8 in a body: in JSON, where
// invalid bytes are (marked before decoding) and where "\u0000" escapes
// decode to; in other formats huma decodes, in the decoded strings.
func (a *API) checkBody(c *textCheck, contentType string, body []byte) {
	if len(body) == 0 {
		return
	}
	var v any
	if contentType != "" && !strings.Contains(contentType, "json") {
		if a.huma.Unmarshal(contentType, body, &v) == nil {
			c.walk("body", v)
		} // else huma answers the malformed body
		return
	}
	text := body
	if !utf8.Valid(body) {
		if bytes.Contains(body, []byte(invalidMark)) || bytes.Contains(bytes.ToLower(body), []byte(`\ufdd0`)) {
			c.add("body", msgInvalid) // the mark would not say where
			return
		}
		text, c.marked = bytes.ToValidUTF8(body, []byte(invalidMark)), true
	}
	if err := json.Unmarshal(text, &v); err != nil {
		// Malformed JSON is huma's 400, unless the bytes are wrong too.
		switch {
		case c.marked:
			c.add("body", msgInvalid)
		case bytes.IndexByte(body, 0) >= 0:
			c.add("body", msgNUL)
		}
		return
	}
	c.walk("body", v)
}

// unstorableText reports a PostgreSQL refusal of a string (NUL, or bytes
// that are not valid in the database's encoding): the client's fault, a
// 422, should any reach the database past checkText.
func unstorableText(err error) bool {
	var pe *pgconn.PgError
	// 22021: character_not_in_repertoire; 22P05: untranslatable_character.
	return errors.As(err, &pe) && (pe.Code == "22021" || pe.Code == "22P05")
}
