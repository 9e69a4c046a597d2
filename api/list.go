package api

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/rackcloud/rackcloud/store"
)

// ListParams are the keyset pagination and label filter of every list.
type ListParams struct {
	Limit         int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size."`
	Cursor        string `query:"cursor" maxLength:"512" doc:"Opaque cursor from the previous page's next_cursor or Link header."`
	LabelSelector string `query:"label_selector" maxLength:"1024" doc:"Only items whose labels contain all these key=value pairs, comma-separated." example:"rack=r1,ssd=true"`
}

// listBody is a page of items.
type listBody[T any] struct {
	Items      []T    `json:"items" doc:"The page's items, in name order."`
	NextCursor string `json:"next_cursor,omitempty" doc:"Pass as cursor to get the next page; absent on the last page."`
}

type listOutput[T any] struct {
	Link string `header:"Link" doc:"RFC 8288 link to the next page (rel=\"next\"), absent on the last page."`
	Body listBody[T]
}

var (
	labelKeyRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$`)
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9._/:@=+-]{0,255}$`)
)

// MaxLabels caps the labels of a resource.
const MaxLabels = 64

// checkLabels validates labels; loc names the field in the problem.
func checkLabels(loc string, l map[string]string) error {
	if len(l) > MaxLabels {
		return huma.Error422UnprocessableEntity("too many labels", &huma.ErrorDetail{Location: loc, Message: fmt.Sprintf("at most %d labels", MaxLabels)})
	}
	for k, v := range l {
		if !labelKeyRE.MatchString(k) {
			return huma.Error422UnprocessableEntity("bad label key", &huma.ErrorDetail{Location: loc, Message: "label keys are 1-63 letters, digits and . _ / - starting and ending with a letter or digit", Value: k})
		}
		if !labelValueRE.MatchString(v) {
			return huma.Error422UnprocessableEntity("bad label value", &huma.ErrorDetail{Location: loc + "." + k, Message: "label values are at most 255 letters, digits and . _ / : @ = + -", Value: v})
		}
	}
	return nil
}

// filter turns the list parameters into a store filter (one more row than
// the page, to know whether there is a next page).
func (l ListParams) filter() (store.Filter, error) {
	cur, err := store.ParseCursor(l.Cursor)
	if err != nil {
		return store.Filter{}, huma.Error422UnprocessableEntity("malformed cursor", &huma.ErrorDetail{Location: "query.cursor", Message: "not a cursor from this API", Value: l.Cursor})
	}
	f := store.Filter{After: cur, Limit: l.Limit + 1}
	if l.LabelSelector != "" {
		f.Labels = map[string]string{}
		for _, kv := range strings.Split(l.LabelSelector, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || !labelKeyRE.MatchString(k) || !labelValueRE.MatchString(v) {
				return store.Filter{}, huma.Error422UnprocessableEntity("malformed label selector", &huma.ErrorDetail{Location: "query.label_selector", Message: "want key=value pairs separated by commas", Value: l.LabelSelector})
			}
			f.Labels[k] = v
		}
	}
	return f, nil
}

// page cuts rows to the page size, converts them, and sets the next
// cursor and Link header; extra are the filters to carry into the link.
func page[R, T any](path string, l ListParams, extra url.Values, rows []R, key func(R) store.Cursor, conv func(R) T) *listOutput[T] {
	out := &listOutput[T]{}
	if len(rows) > l.Limit {
		rows = rows[:l.Limit]
		out.Body.NextCursor = key(rows[len(rows)-1]).Encode()
		out.Link = nextLink(path, l, extra, out.Body.NextCursor)
	}
	out.Body.Items = make([]T, 0, len(rows))
	for _, r := range rows {
		out.Body.Items = append(out.Body.Items, conv(r))
	}
	return out
}

func nextLink(path string, l ListParams, extra url.Values, cursor string) string {
	q := url.Values{}
	for k, v := range extra {
		if len(v) > 0 && v[0] != "" {
			q[k] = v
		}
	}
	q.Set("limit", strconv.Itoa(l.Limit))
	q.Set("cursor", cursor)
	if l.LabelSelector != "" {
		q.Set("label_selector", l.LabelSelector)
	}
	return "<" + path + "?" + q.Encode() + `>; rel="next"`
}
