package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// to find where they are: a noncharacter (U+FDD0) that no client means.
const invalidMark = "\uFDD0"

// checkText is the middleware that refuses NUL and invalid UTF-8.
func (a *API) checkText(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	var errs []error
	for _, p := range op.Parameters {
		loc := p.In + "." + p.Name
		switch p.In {
		case "path":
			errs = textErrors(errs, loc, ctx.Param(p.Name))
		case "query":
			u := ctx.URL()
			for _, v := range u.Query()[p.Name] {
				errs = textErrors(errs, loc, v)
			}
		case "header":
			ctx.EachHeader(func(name, v string) {
				if strings.EqualFold(name, p.Name) {
					errs = textErrors(errs, loc, v)
				}
			})
		}
	}
	if op.RequestBody != nil {
		var body []byte
		var ok bool
		ctx, body, ok = readBodyAhead(ctx)
		if ok {
			errs = append(errs, a.bodyTextErrors(ctx.Header("Content-Type"), body)...)
		}
	}
	if len(errs) > 0 {
		_ = huma.WriteErr(a.huma, ctx, http.StatusUnprocessableEntity, textDetail(errs), errs[:min(len(errs), maxTextErrors)]...)
		return
	}
	next(ctx)
}

// textDetail says in one line what is wrong: the first field and how many
// more.
func textDetail(errs []error) string {
	d := errs[0].(*huma.ErrorDetail)
	s := d.Location + " " + d.Message
	if n := len(errs) - 1; n > 0 {
		s += fmt.Sprintf(" (and %d more)", n)
	}
	return "text must be valid UTF-8 without U+0000: " + s
}

// textErrors appends what is wrong with s at loc.
func textErrors(errs []error, loc, s string) []error {
	if m := textFault(s); m != "" {
		return append(errs, &huma.ErrorDetail{Location: loc, Message: m})
	}
	return errs
}

// textFault says what is wrong with s, or "".
func textFault(s string) string {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return msgNUL
	case !utf8.ValidString(s) || strings.Contains(s, invalidMark):
		return msgInvalid
	}
	return ""
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

// bodyTextErrors finds NUL and invalid UTF-8 in a body: in JSON, where
// invalid bytes are (marked before decoding) and where "\u0000" escapes
// decode to; in other formats huma decodes (CBOR), in the decoded strings.
func (a *API) bodyTextErrors(contentType string, body []byte) []error {
	if len(body) == 0 {
		return nil
	}
	var v any
	if contentType != "" && !strings.Contains(contentType, "json") {
		if a.huma.Unmarshal(contentType, body, &v) != nil {
			return nil // huma answers the malformed body
		}
		return walkText(nil, "body", v)
	}
	valid := utf8.Valid(body)
	text := body
	if !valid {
		if bytes.Contains(body, []byte(invalidMark)) || bytes.Contains(bytes.ToLower(body), []byte(`\ufdd0`)) {
			return []error{&huma.ErrorDetail{Location: "body", Message: msgInvalid}}
		}
		text = bytes.ToValidUTF8(body, []byte(invalidMark))
	}
	if err := json.Unmarshal(text, &v); err != nil {
		// Malformed JSON is huma's 400, unless the bytes are wrong too.
		switch {
		case !valid:
			return []error{&huma.ErrorDetail{Location: "body", Message: msgInvalid}}
		case bytes.IndexByte(body, 0) >= 0:
			return []error{&huma.ErrorDetail{Location: "body", Message: msgNUL}}
		}
		return nil
	}
	return walkText(nil, "body", v)
}

// walkText appends the errors of every string in v, object keys included,
// naming each by its location as huma does (body.labels.env, body[3].error).
func walkText(errs []error, loc string, v any) []error {
	switch v := v.(type) {
	case string:
		return textErrors(errs, loc, v)
	case []any:
		for i, e := range v {
			errs = walkText(errs, fmt.Sprintf("%s[%d]", loc, i), e)
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if m := textFault(k); m != "" {
				// The location does not echo a broken key.
				errs = append(errs, &huma.ErrorDetail{Location: loc, Message: "a key " + m})
				continue
			}
			errs = walkText(errs, loc+"."+k, v[k])
		}
	case map[any]any: // CBOR
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = e
		}
		return walkText(errs, loc, m)
	}
	return errs
}

// unstorableText reports a PostgreSQL refusal of a string (NUL, or bytes
// that are not valid in the database's encoding): the client's fault, a
// 422, should any reach the database past checkText.
func unstorableText(err error) bool {
	var pe *pgconn.PgError
	// 22021: character_not_in_repertoire; 22P05: untranslatable_character.
	return errors.As(err, &pe) && (pe.Code == "22021" || pe.Code == "22P05")
}
