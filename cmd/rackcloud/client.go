package main

// The client verbs (host, guest, task, region, zone, rack, image, project,
// token, audit) talk to a rackcloud server over its REST API. They read
// the server URL and token from --server/--token, else from
// RACKCLOUD_SERVER/RACKCLOUD_TOKEN, else from the YAML config file
// (~/.config/rackcloud/config.yaml, keys "server" and "token", or the file
// named by --config / RACKCLOUD_CONFIG).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffyaml"
)

// Output streams of the client verbs; tests replace them.
var (
	stdout io.Writer = os.Stdout
	stderr io.Writer = os.Stderr
)

// DefaultServer is the API the client talks to when nothing says another.
const DefaultServer = "http://127.0.0.1:8080"

func defaultConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "rackcloud", "config.yaml")
}

// clientFlags are the flags every client verb has.
type clientFlags struct {
	server  string
	caFile  string
	token   string
	output  string
	timeout time.Duration
}

func (c *clientFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", DefaultServer, "rackcloud API URL (env RACKCLOUD_SERVER, config key server)")
	fs.StringVar(&c.token, "token", "", "bearer token (env RACKCLOUD_TOKEN, config key token)")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM CA certificate(s) an https --server is checked against, besides the system's (env RACKCLOUD_CA_FILE, config key ca-file)")
	fs.StringVar(&c.output, "o", "table", "output: table or json")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "give up on a request after this long (not on --wait)")
	fs.String("config", defaultConfigPath(), "YAML config file with server and token (env RACKCLOUD_CONFIG)")
}

// parseClient parses flags, then RACKCLOUD_* variables, then the config
// file (missing is fine), and returns the client and the positional
// arguments.
func parseClient(fs *flag.FlagSet, cf *clientFlags, args []string) (*client, []string, error) {
	// Flags may follow positional arguments: "host get ID -o json".
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBoolFlag(f) && i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	err := ff.Parse(fs, flags, ff.WithEnvVarPrefix("RACKCLOUD"), ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(ffyaml.Parser), ff.WithAllowMissingConfigFile(true), ff.WithIgnoreUndefined(true))
	if err != nil {
		return nil, nil, err
	}
	if cf.output != "table" && cf.output != "json" {
		return nil, nil, fmt.Errorf("-o %q: want table or json", cf.output)
	}
	u, err := url.Parse(strings.TrimSuffix(cf.server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, fmt.Errorf("--server %q: want an http(s) URL", cf.server)
	}
	hc := &http.Client{}
	if cf.caFile != "" {
		roots, err := caPool(cf.caFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--ca-file: %w", err)
		}
		hc.Transport = &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: roots}}
	}
	return &client{base: u, token: cf.token, out: cf.output, timeout: cf.timeout, http: hc}, pos, nil
}

// caPool is the system's roots plus the PEM certificates in file.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return roots, nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// client calls the API.
type client struct {
	base    *url.URL
	token   string
	out     string
	timeout time.Duration
	http    *http.Client
}

// problem is an RFC 9457 problem document returned by the API.
type problem struct {
	Status int    `json:"status"`
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Errors []struct {
		Location string `json:"location"`
		Message  string `json:"message"`
		Value    any    `json:"value"`
	} `json:"errors"`
}

func (p *problem) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", p.Status, p.Title)
	if p.Detail != "" {
		b.WriteString(": " + p.Detail)
	}
	for _, e := range p.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", e.Location, e.Message)
		if e.Value != nil {
			fmt.Fprintf(&b, " (got %v)", e.Value)
		}
	}
	return b.String()
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// call sends a request and returns the answer; a problem document is an
// error of type *problem.
func (c *client) call(ctx context.Context, method, path string, body any, hdr ...string) (*response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if res.StatusCode >= 400 {
		p := &problem{Status: res.StatusCode, Title: http.StatusText(res.StatusCode)}
		_ = json.Unmarshal(b, p)
		if res.StatusCode == http.StatusUnauthorized && c.token == "" {
			p.Detail += " (set --token, RACKCLOUD_TOKEN or token in " + defaultConfigPath() + ")"
		}
		return nil, p
	}
	return &response{status: res.StatusCode, header: res.Header, body: b}, nil
}

// get decodes a JSON answer into out.
func (c *client) get(ctx context.Context, path string, out any) error {
	r, err := c.call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(r.body, out)
}

var linkNext = regexp.MustCompile(`<([^>]+)>;\s*rel="next"`)

// list follows the Link headers of a list and returns up to max items (0:
// all).
func (c *client) list(ctx context.Context, path string, q url.Values, max int) ([]map[string]any, error) {
	if q == nil {
		q = url.Values{}
	}
	if max > 0 && max < 1000 {
		q.Set("limit", fmt.Sprint(max))
	} else {
		q.Set("limit", "1000")
	}
	next := path + "?" + q.Encode()
	var all []map[string]any
	for next != "" {
		r, err := c.call(ctx, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		var page struct {
			Items []map[string]any `json:"items"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if max > 0 && len(all) >= max {
			return all[:max], nil
		}
		next = ""
		if m := linkNext.FindStringSubmatch(r.header.Get("Link")); m != nil {
			next = m[1]
		}
	}
	return all, nil
}

// print writes v as indented JSON.
func printJSON(v any) error {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// column is one column of a table: a header and a path into the item
// ("bmc.address").
type column struct{ header, path string }

func lookup(m map[string]any, path string) string {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = mm[k]
	}
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return fmt.Sprint(x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, k+"="+fmt.Sprint(x[k]))
		}
		return strings.Join(parts, ",")
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			parts = append(parts, fmt.Sprint(e))
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(x)
	}
}

// printItems writes items as a table (or JSON with -o json).
func (c *client) printItems(items []map[string]any, cols []column) error {
	if c.out == "json" {
		if items == nil {
			items = []map[string]any{}
		}
		return printJSON(items)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	hs := make([]string, len(cols))
	for i, col := range cols {
		hs[i] = col.header
	}
	fmt.Fprintln(tw, strings.Join(hs, "\t"))
	for _, it := range items {
		vs := make([]string, len(cols))
		for i, col := range cols {
			vs[i] = lookup(it, col.path)
		}
		fmt.Fprintln(tw, strings.Join(vs, "\t"))
	}
	return tw.Flush()
}

// printItem writes one resource as JSON.
func (c *client) printItem(body []byte) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	return printJSON(v)
}

// labelsFlag collects repeated key=value flags.
type labelsFlag map[string]string

func (l labelsFlag) String() string {
	parts := make([]string, 0, len(l))
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (l labelsFlag) Set(s string) error {
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("want key=value, got %q", kv)
		}
		l[k] = v
	}
	return nil
}

// listFlag collects repeated values.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// resolve turns a name into an ID by listing the collection; IDs and ""
// pass unchanged, without a request.
func (c *client) resolve(ctx context.Context, collection, nameOrID string) (string, error) {
	if nameOrID == "" || uuidRE.MatchString(nameOrID) {
		return nameOrID, nil
	}
	items, err := c.list(ctx, "/v1/"+collection, nil, 0)
	if err != nil {
		return "", err
	}
	var found []string
	for _, it := range items {
		if it["name"] == nameOrID {
			found = append(found, fmt.Sprint(it["id"]))
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no %s named %q", strings.TrimSuffix(collection, "s"), nameOrID)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%d %s are named %q: use an ID", len(found), collection, nameOrID)
}

// verb is one action of a client command.
type verb struct {
	name, usage, summary string
	run                  func(ctx context.Context, args []string) error
}

// verbs are every command's verbs by "cmd verb", for their usage lines.
var verbs = map[string]verb{}

// dispatch runs the verb named by args[0].
func dispatch(cmd string, vs []verb) func(ctx context.Context, args []string) error {
	for _, v := range vs {
		verbs[cmd+" "+v.name] = v
	}
	return func(ctx context.Context, args []string) error {
		if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
			w := stdout
			if len(args) == 0 {
				w = stderr
			}
			fmt.Fprintf(w, "usage: rackcloud %s <verb> [flags]\n\nverbs:\n", cmd)
			for _, v := range vs {
				fmt.Fprintf(w, "  %-40s %s\n", v.name+" "+v.usage, v.summary)
			}
			fmt.Fprintf(w, "\nevery verb takes --server, --token, -o table|json and --config; run 'rackcloud %s <verb> -h' for its flags\n", cmd)
			if len(args) == 0 {
				return errors.New("missing verb")
			}
			return flag.ErrHelp
		}
		for _, v := range vs {
			if v.name == args[0] {
				return v.run(ctx, args[1:])
			}
		}
		return fmt.Errorf("unknown verb %q (try 'rackcloud %s help')", args[0], cmd)
	}
}

// newVerbFlags makes the flag set of a verb with the client flags bound;
// its usage line shows the verb's arguments (NAME, ID...).
func newVerbFlags(cmd, verb string, cf *clientFlags) *flag.FlagSet {
	v := verbs[cmd+" "+verb]
	fs := newFlagSet("rackcloud "+cmd+" "+verb, v.usage, v.summary)
	cf.bind(fs)
	return fs
}

// needArgs checks the count of positional arguments.
func needArgs(pos []string, n int, usage string) error {
	if len(pos) != n {
		return fmt.Errorf("usage: %s", usage)
	}
	return nil
}

// waitTask follows a task's events, printing its steps as they go, and
// returns an error unless the task succeeded. A stream that breaks (the
// server restarted) is resumed after the last event seen.
func (c *client) waitTask(ctx context.Context, id string) error {
	start := time.Now()
	f := follower{id: id, start: start}
	for attempt := 0; ; attempt++ {
		err := c.follow(ctx, &f)
		if f.last != "" {
			break
		}
		var p *problem
		if errors.As(err, &p) || ctx.Err() != nil || attempt >= 5 {
			if err == nil {
				err = fmt.Errorf("task %s: event stream ended early", id)
			}
			return err
		}
		wait := time.Duration(1<<attempt) * 250 * time.Millisecond
		fmt.Fprintf(stderr, "  (event stream broke: %v; resuming after event %d in %s)\n", err, f.seq, wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	switch f.last {
	case "succeeded":
		fmt.Fprintf(stderr, "task %s succeeded in %s\n", id, time.Since(start).Round(100*time.Millisecond))
		return nil
	case "failed":
		return fmt.Errorf("task %s failed: %s", id, f.err)
	default:
		return fmt.Errorf("task %s was canceled", id)
	}
}

// follower is the progress of waitTask across reconnects.
type follower struct {
	id    string
	start time.Time
	seq   int64  // last event seen
	last  string // the terminal event's type, once seen
	err   string // the task's error
	// started counts the task's starts: after the first, a worker picked
	// it up again (woken after a wait, or a retry).
	started int
}

// follow reads the event stream once, from after f.seq.
func (c *client) follow(ctx context.Context, f *follower) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/v1/tasks/"+f.id+"/events", nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "text/event-stream")
	if f.seq > 0 {
		req.Header.Set("Last-Event-ID", fmt.Sprint(f.seq))
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("follow task %s: %w", f.id, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		p := &problem{Status: res.StatusCode, Title: http.StatusText(res.StatusCode)}
		_ = json.NewDecoder(res.Body).Decode(p)
		return p
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Seq      int64  `json:"seq"`
			Type     string `json:"type"`
			Step     int    `json:"step"`
			StepName string `json:"step_name"`
			Attempt  int    `json:"attempt"`
			Error    string `json:"error"`
			Message  string `json:"message"`
			Phase    string `json:"phase"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			return fmt.Errorf("task %s: bad event: %w", f.id, err)
		}
		f.seq = ev.Seq
		el := time.Since(f.start).Round(100 * time.Millisecond)
		switch ev.Type {
		case "created":
			fmt.Fprintf(stderr, "task %s: queued\n", f.id)
		case "started":
			if f.started++; f.started == 1 {
				fmt.Fprintf(stderr, "  %6s  started\n", el)
			}
		case "step_succeeded":
			if ev.Phase == "undo" { // a compensation: what the step did is undone
				fmt.Fprintf(stderr, "  %6s  ↩ undid step %d %s\n", el, ev.Step+1, ev.StepName)
				break
			}
			fmt.Fprintf(stderr, "  %6s  ✓ step %d %s\n", el, ev.Step+1, ev.StepName)
		case "step_retrying":
			fmt.Fprintf(stderr, "  %6s  ↻ step %d %s, attempt %d failed: %s\n", el, ev.Step+1, ev.StepName, ev.Attempt, ev.Error)
		case "step_failed":
			fmt.Fprintf(stderr, "  %6s  ✗ step %d %s: %s\n", el, ev.Step+1, ev.StepName, ev.Error)
		case "step_waiting":
			fmt.Fprintf(stderr, "  %6s  … step %d %s waits for %s\n", el, ev.Step+1, ev.StepName, ev.Message)
		case "undo_started":
			fmt.Fprintf(stderr, "  %6s  undoing the steps that ran\n", el)
		case "cancel_requested":
			fmt.Fprintf(stderr, "  %6s  cancel requested\n", el)
		case "succeeded", "failed", "canceled":
			f.last, f.err = ev.Type, ev.Error
			if ev.Type != "succeeded" {
				fmt.Fprintf(stderr, "  %6s  %s\n", el, ev.Type)
			}
			return nil
		default:
			fmt.Fprintf(stderr, "  %6s  %s\n", el, ev.Type)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("follow task %s: %w", f.id, err)
	}
	return nil
}

// accepted prints a 202's task and, with wait, follows it.
func (c *client) accepted(ctx context.Context, r *response, wait bool) error {
	var t struct {
		ID     string `json:"id"`
		Kind   string `json:"kind"`
		Target string `json:"target"`
	}
	if err := json.Unmarshal(r.body, &t); err != nil {
		return err
	}
	if c.out == "json" {
		if err := c.printItem(r.body); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "task %s %s %s\n", t.ID, t.Kind, t.Target)
	}
	if !wait {
		return nil
	}
	return c.waitTask(ctx, t.ID)
}
