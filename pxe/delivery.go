package pxe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Event delivery. The queue goes out in order, in batches. A batch the API
// refuses (4xx but 401, 403, 408 and 429) is split in halves until the
// events it refuses alone are found: those are dropped, logged and
// counted, the rest delivered in order. Anything else the API does not
// take (5xx, no answer, 401, 403, 408, 429) ends the round: nothing is
// dropped, and the round is tried again after a backoff (Retry doubling up
// to RetryMax, with jitter). After PoisonAfter 5xx answers in a row to
// the same batch, 5xx answers are split like refusals, and an event that
// alone keeps getting them from an API that otherwise answers is dropped
// as poison (reason server_error).

// answer is what the API said to one POST of events.
type answer struct {
	status  int    // 0: no answer
	err     error  // why the events were not taken, nil for 2xx
	problem string // the problem document's detail, cleaned
	after   time.Duration
}

// refused reports a 4xx that the same events would get again.
func (a answer) refused() bool {
	switch a.status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return false // configuration or throttling: try again later
	}
	return a.status >= 400 && a.status < 500
}

func (a answer) serverError() bool { return a.status >= 500 }

// reason is the rackcloud_boot_events_rejected_total label of a refusal.
func (a answer) reason() string {
	switch {
	case a.serverError():
		return rejectServerError
	case a.status == http.StatusBadRequest || a.status == http.StatusUnprocessableEntity:
		return rejectInvalid
	case a.status == http.StatusRequestEntityTooLarge:
		return rejectTooLarge
	}
	return rejectRefused
}

// round is one pass of sendEvents over a batch that starts at sequence
// number head.
type round struct {
	c      *APIClient
	head   uint64
	bisect bool // 5xx answers are split too (poison search)
	done   int  // the batch's first done events are settled
}

// sendEvents delivers the queue until it is empty or a round ends early;
// the next round then waits for its backoff.
func (c *APIClient) sendEvents(ctx context.Context) {
	for ctx.Err() == nil {
		c.mu.Lock()
		n := min(len(c.queue), DefaultEventBatch)
		batch := append([]Event(nil), c.queue[:n]...)
		r := round{c: c, head: c.head, bisect: c.streakHead == c.head && c.streak >= c.cfg.PoisonAfter}
		c.mu.Unlock()
		if n == 0 {
			c.spool() // removes a spool file whose events are delivered
			return
		}
		a := r.deliver(ctx, batch, 0)
		if a.err == nil {
			c.mu.Lock()
			c.failures, c.streak = 0, 0
			c.mu.Unlock()
			continue
		}
		c.backOff(r.head, a)
		c.spool()
		return
	}
}

// deliver sends evs (the batch's events from offset off) and settles
// every one it can, in order. It returns the answer that ended the round
// early, or a zero answer when all of evs are settled.
func (r *round) deliver(ctx context.Context, evs []Event, off int) answer {
	if skip := r.done - off; skip > 0 { // settled meanwhile (a canary)
		if skip >= len(evs) {
			return answer{}
		}
		evs, off = evs[skip:], r.done
	}
	a := r.c.post(ctx, evs)
	switch {
	case a.err == nil:
	case !a.refused() && !(a.serverError() && r.bisect):
		return a
	case len(evs) > 1:
		h := len(evs) / 2
		if a := r.deliver(ctx, evs[:h], off); a.err != nil {
			return a
		}
		return r.deliver(ctx, evs[h:], off+h)
	default:
		if a.serverError() {
			if a = r.poison(ctx, evs[0], off); a.err != nil && !a.refused() && !a.serverError() {
				return a
			}
		}
		if a.err != nil {
			r.c.reject(evs[0], a)
		}
	}
	r.settle(off + len(evs))
	return answer{}
}

func (r *round) settle(n int) {
	if n > r.done {
		r.done = n
		r.c.settle(r.head, n)
	}
}

// maxCanaries bounds the events poison sends to learn whether the API
// takes events at all.
const maxCanaries = 8

// poison decides about e (at offset off), which alone got a 5xx: it is
// sent again until it got PoisonAfter of them in a row (pausing Retry
// between tries), then the events queued after it are sent alone, one by
// one (up to maxCanaries), until the API takes one. If it does and still
// fails e, e is poison: its last answer is returned, to be dropped (an API
// that takes e too just recovered). If it takes none
// (or none is queued), the API is failing, not poisoned: the answer is a
// transient error and nothing is dropped. A canary taken right after e
// is settled; one taken further on is sent again in its turn (the API
// drops such duplicates).
func (r *round) poison(ctx context.Context, e Event, off int) answer {
	a := answer{status: http.StatusInternalServerError}
	for try := 1; try < r.c.cfg.PoisonAfter; try++ {
		select {
		case <-ctx.Done():
			return answer{err: context.Cause(ctx)}
		case <-time.After(r.c.cfg.Retry):
		}
		if a = r.c.post(ctx, []Event{e}); !a.serverError() {
			return a
		}
	}
	for i := 1; i <= maxCanaries; i++ {
		canary, ok := r.c.queued(r.head + uint64(off+i))
		if !ok {
			break
		}
		if r.c.post(ctx, []Event{canary}).err == nil {
			// The API takes events again: unless it still fails e,
			// the outage just ended during the search (e is not
			// poison, and goes now).
			if b := r.c.post(ctx, []Event{e}); !b.serverError() {
				return b
			}
			if i == 1 {
				r.settle(off + 2) // e goes too, as poison
			}
			return a
		}
	}
	return answer{err: fmt.Errorf("API fails this event alone, and the next ones too: %w", a.err)}
}

// queued returns the event with sequence number seq, if still queued.
func (c *APIClient) queued(seq uint64) (Event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq < c.head || seq-c.head >= uint64(len(c.queue)) {
		return Event{}, false
	}
	return c.queue[seq-c.head], true
}

// reject drops e for good: one log line and the counter.
func (c *APIClient) reject(e Event, a answer) {
	c.m.eventsRejected.WithLabelValues(a.reason()).Inc()
	c.log.Error("API refused a boot event, dropping it", "mac", e.MAC, "kind", e.Kind, "time", e.Time,
		"status", a.status, "problem", a.problem)
}

// settle removes the first n events of the batch that started at head
// from the queue (those still queued: the oldest may have been dropped
// meanwhile, which moved the head).
func (c *APIClient) settle(head uint64, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if end := head + uint64(n); end > c.head {
		k := min(int(end-c.head), len(c.queue))
		c.queue = c.queue[k:]
		c.head += uint64(k)
		c.spoolDirty = true
	}
}

// backOff schedules the next round after a failed one: Retry doubling
// with every failure in a row, ±20% jitter, at most RetryMax, and at
// least what a Retry-After header asked for.
func (c *APIClient) backOff(head uint64, a answer) {
	c.mu.Lock()
	c.failures++
	switch {
	case !a.serverError():
	case c.streakHead == head:
		c.streak++
	default:
		c.streakHead, c.streak = head, 1
	}
	d := min(c.cfg.Retry<<min(c.failures-1, 20), c.cfg.RetryMax)
	d = min(d*4/5+rand.N(d*2/5+1), c.cfg.RetryMax)
	d = max(d, a.after)
	c.retryAt = time.Now().Add(d)
	failures, streak := c.failures, c.streak
	c.mu.Unlock()
	args := []any{"status", a.status, "err", a.err, "problem", a.problem, "failures", failures, "retry_in", d.Round(time.Millisecond)}
	switch a.status {
	case http.StatusUnauthorized, http.StatusForbidden:
		c.log.Error("API refuses the boot service's credentials: boot events are kept and retried; check the API token", args...)
	default:
		if a.serverError() {
			args = append(args, "server_errors_in_a_row", streak)
		}
		c.log.Warn("boot events not delivered, will retry", args...)
	}
}

// retryWait is how long the next round must still wait (0: it may go).
func (c *APIClient) retryWait() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		return 0
	}
	return time.Until(c.retryAt)
}

// post sends one batch.
func (c *APIClient) post(ctx context.Context, batch []Event) answer {
	body, err := json.Marshal(batch)
	if err != nil {
		return answer{err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+EventsPath, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	c.auth(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.setReachable(false)
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 == 2 {
		return answer{status: resp.StatusCode}
	}
	a := answer{status: resp.StatusCode, err: fmt.Errorf("API status %s", resp.Status), problem: problemDetail(b)}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		a.after = time.Duration(secs) * time.Second
	}
	return a
}

// problemDetail summarises an RFC 9457 problem document (title, detail,
// the first error's location and message) in one clean line.
func problemDetail(b []byte) string {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Errors []struct {
			Location string `json:"location"`
			Message  string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return cleanText(string(b), 256)
	}
	s := p.Title
	if p.Detail != "" && p.Detail != p.Title {
		s += ": " + p.Detail
	}
	if len(p.Errors) > 0 {
		s += " (" + p.Errors[0].Location + ": " + p.Errors[0].Message + ")"
	}
	return cleanText(s, 512)
}
