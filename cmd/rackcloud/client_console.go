package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
)

// guestConsole prints the newest console output of a guest: a VM's
// serial console, a container's output.
func guestConsole(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("guest", "console", &cf)
	n := fs.Int("bytes", 65536, "at most this many bytes, the newest")
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud guest console ID"); err != nil {
		return err
	}
	id, err := c.resolve(ctx, "guests", pos[0])
	if err != nil {
		return err
	}
	r, err := c.call(ctx, http.MethodGet, "/v1/guests/"+id+"/console?bytes="+strconv.Itoa(*n), nil)
	if err != nil {
		return err
	}
	if c.out == "json" {
		return c.printItem(r.body)
	}
	var out struct {
		Text      string `json:"text"`
		Truncated bool   `json:"truncated"`
	}
	if err := jsonUnmarshal(r.body, &out); err != nil {
		return err
	}
	if out.Truncated {
		fmt.Fprintf(os.Stderr, "(older output left out; --bytes for more)\n")
	}
	_, err = fmt.Print(out.Text)
	return err
}
