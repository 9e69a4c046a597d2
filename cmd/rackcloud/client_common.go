package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func errUsage(u string) error { return errors.New("usage: " + u) }

// getVerb shows one resource of a collection by name or ID.
func getVerb(cmd, collection string) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		var cf clientFlags
		fs := newVerbFlags(cmd, "get", &cf)
		c, pos, err := parseClient(fs, &cf, args)
		if err != nil {
			return err
		}
		if err := needArgs(pos, 1, "rackcloud "+cmd+" get ID"); err != nil {
			return err
		}
		id, err := c.resolve(ctx, collection, pos[0])
		if err != nil {
			return err
		}
		r, err := c.call(ctx, http.MethodGet, "/v1/"+collection+"/"+id, nil)
		if err != nil {
			return err
		}
		return c.printItem(r.body)
	}
}

// deleteVerb deletes one resource by name or ID (--if-match to guard).
func deleteVerb(cmd, collection string) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		var cf clientFlags
		fs := newVerbFlags(cmd, "delete", &cf)
		ifMatch := fs.String("if-match", "", "only if the resource's ETag is still this")
		c, pos, err := parseClient(fs, &cf, args)
		if err != nil {
			return err
		}
		if err := needArgs(pos, 1, "rackcloud "+cmd+" delete ID"); err != nil {
			return err
		}
		id, err := c.resolve(ctx, collection, pos[0])
		if err != nil {
			return err
		}
		var hdr []string
		if *ifMatch != "" {
			hdr = []string{"If-Match", *ifMatch}
		}
		r, err := c.call(ctx, http.MethodDelete, "/v1/"+collection+"/"+id, nil, hdr...)
		if err != nil {
			return err
		}
		if r.status == http.StatusAccepted {
			return c.accepted(ctx, r, false)
		}
		fmt.Fprintf(stdout, "deleted %s %s\n", cmd, id)
		return nil
	}
}

// listVerb lists a collection with the label filter.
func listVerb(cmd, collection string, cols []column) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		var cf clientFlags
		fs := newVerbFlags(cmd, "list", &cf)
		limit := fs.Int("limit", 0, "at most this many (0: all)")
		labels := labelsFlag{}
		fs.Var(labels, "label", "only items with this label key=value (repeatable)")
		c, _, err := parseClient(fs, &cf, args)
		if err != nil {
			return err
		}
		return c.printList(ctx, "/v1/"+collection, *limit, cols, "label_selector", labels.String())
	}
}

// printList lists path, up to limit items (0: all), with the query
// parameters given as name, value pairs (those with an empty value are
// left out), and prints the items.
func (c *client) printList(ctx context.Context, path string, limit int, cols []column, query ...string) error {
	items, err := c.listQuery(ctx, path, limit, query...)
	if err != nil {
		return err
	}
	return c.printItems(items, cols)
}

// listQuery lists path like printList, returning the items.
func (c *client) listQuery(ctx context.Context, path string, limit int, query ...string) ([]map[string]any, error) {
	q := url.Values{}
	for i := 0; i+1 < len(query); i += 2 {
		if query[i+1] != "" {
			q.Set(query[i], query[i+1])
		}
	}
	return c.list(ctx, path, q, limit)
}
