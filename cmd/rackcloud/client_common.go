package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
func listVerb(cmd, collection string, cols []column, filters ...string) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		var cf clientFlags
		fs := newVerbFlags(cmd, "list", &cf)
		limit := fs.Int("limit", 0, "at most this many (0: all)")
		labels := labelsFlag{}
		fs.Var(labels, "label", "only items with this label key=value (repeatable)")
		vals := map[string]*string{}
		for _, f := range filters {
			vals[f] = fs.String(f, "", "only items with this "+f)
		}
		c, _, err := parseClient(fs, &cf, args)
		if err != nil {
			return err
		}
		q := map[string][]string{}
		if len(labels) > 0 {
			q["label_selector"] = []string{labels.String()}
		}
		for k, v := range vals {
			if *v != "" {
				q[k] = []string{*v}
			}
		}
		items, err := c.list(ctx, "/v1/"+collection, q, *limit)
		if err != nil {
			return err
		}
		return c.printItems(items, cols)
	}
}
