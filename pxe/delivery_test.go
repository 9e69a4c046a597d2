package pxe

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab/labtest"
)

// scriptedAPI answers POST /v1/boot/events with what answer says about
// each batch (n counts the posts, from 1) and keeps the events of the
// batches it took, in order; GET profile lookups answer 404, or what
// profile says.
type scriptedAPI struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	answer  func(n int, batch []Event) int
	profile func() int
	posts   int
	taken   []Event
}

func startScriptedAPI(t *testing.T, answer func(n int, batch []Event) int) *scriptedAPI {
	a := &scriptedAPI{t: t, answer: answer}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if r.Method == http.MethodGet {
			code := http.StatusNotFound
			if a.profile != nil {
				code = a.profile()
			}
			http.Error(w, "no profile", code)
			return
		}
		var batch []Event
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.posts++
		code := a.answer(a.posts, batch)
		if code/100 == 2 {
			a.taken = append(a.taken, batch...)
			w.WriteHeader(code)
			return
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"title":%q,"status":%d,"detail":"scripted refusal","errors":[{"location":"body[0].detail","message":"marker"}]}`,
			http.StatusText(code), code)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *scriptedAPI) set(answer func(n int, batch []Event) int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.answer = answer
}

func (a *scriptedAPI) postCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.posts
}

// takenDetails lists the Detail of every event taken, first copies only
// (a poison search may send an event early, then again in its turn; the
// API drops such duplicates).
func (a *scriptedAPI) takenDetails() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	seen := map[string]bool{}
	for _, e := range a.taken {
		if !seen[e.Detail] {
			seen[e.Detail] = true
			out = append(out, e.Detail)
		}
	}
	return out
}

// deliveryClient queues events with Detail "e0".."e<n-1>" (with marker
// appended to those at the given positions) and runs the client.
func deliveryClient(t *testing.T, a *scriptedAPI, logs *labtest.LogBuffer, n int, marked map[int]string) (*APIClient, []string) {
	t.Helper()
	log := testLogger(t)
	if logs != nil {
		log = slogTo(logs)
	}
	c, err := NewAPIClient(APIConfig{BaseURL: a.srv.URL, Timeout: 5 * time.Second, Retry: 5 * time.Millisecond,
		RetryMax: 40 * time.Millisecond, Refresh: time.Hour}, log)
	require.NoError(t, err)
	var good []string
	t0 := time.Now()
	for i := range n {
		e := Event{Time: t0.Add(time.Duration(i) * time.Millisecond), MAC: "52:54:00:dd:00:01", Kind: EventDHCPDiscover,
			Detail: fmt.Sprintf("e%d", i)}
		if m, ok := marked[i]; ok {
			e.Detail += " " + m
		} else {
			good = append(good, e.Detail)
		}
		c.Record(e)
	}
	runClient(t, c)
	return c, good
}

// marker is the status the event's marker asks for (0: none).
func marker(e Event) int {
	for code, m := range map[int]string{422: "POISON-422", 413: "POISON-413", 409: "POISON-409", 500: "POISON-500"} {
		if strings.Contains(e.Detail, m) {
			return code
		}
	}
	return 0
}

// refuseMarked answers a batch with the status of its first marked event.
func refuseMarked(_ int, batch []Event) int {
	for _, e := range batch {
		if code := marker(e); code != 0 {
			return code
		}
	}
	return http.StatusAccepted
}

func rejected(c *APIClient) map[string]float64 {
	out := map[string]float64{}
	for _, r := range []string{rejectInvalid, rejectTooLarge, rejectRefused, rejectServerError} {
		out[r] = counterValue(c.m.eventsRejected.WithLabelValues(r))
	}
	return out
}

// A batch the API refuses (4xx) is split until the events it refuses
// alone are found; they are dropped and counted by reason, with a log line
// each, and every other event is delivered in order.
func TestDeliveryIsolatesRefusedEvents(t *testing.T) {
	a := startScriptedAPI(t, refuseMarked)
	var logs labtest.LogBuffer
	marked := map[int]string{0: "POISON-422", 7: "POISON-413", 8: "POISON-422", 30: "POISON-409", 599: "POISON-422"}
	c, good := deliveryClient(t, a, &logs, 600, marked) // two batches
	pollUntil(t, 30*time.Second, "the queue delivered", func() bool { return c.Pending() == 0 })
	require.Equal(t, good, a.takenDetails(), "the good events, in order")
	require.Equal(t, map[string]float64{rejectInvalid: 3, rejectTooLarge: 1, rejectRefused: 1, rejectServerError: 0}, rejected(c))
	require.Equal(t, len(marked), strings.Count(logs.String(), "API refused a boot event, dropping it"), "one line per event")
	require.Contains(t, logs.String(), "scripted refusal", "the API's problem detail is logged")
	require.Contains(t, logs.String(), "kind=dhcp.discover")
}

// A 5xx (fewer times in a row than PoisonAfter) is retried with backoff
// and drops nothing.
func TestDeliveryRetries5xx(t *testing.T) {
	a := startScriptedAPI(t, func(n int, _ []Event) int {
		if n <= DefaultPoisonAfter-1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusAccepted
	})
	c, good := deliveryClient(t, a, nil, 10, nil)
	pollUntil(t, 30*time.Second, "the queue delivered", func() bool { return c.Pending() == 0 })
	require.Equal(t, good, a.takenDetails())
	require.Equal(t, DefaultPoisonAfter, a.postCount(), "the whole batch again after each 503: no split")
	require.Zero(t, rejected(c)[rejectServerError])
}

// 401, 403 and 429 are not the events' fault: nothing is dropped, the
// batch goes again after a backoff, and bad credentials are logged at
// error level.
func TestDeliveryKeepsEventsOnAuthAndThrottling(t *testing.T) {
	codes := []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests, http.StatusUnauthorized, http.StatusForbidden}
	a := startScriptedAPI(t, func(n int, _ []Event) int {
		if n <= len(codes) {
			return codes[n-1]
		}
		return http.StatusAccepted
	})
	var logs labtest.LogBuffer
	c, good := deliveryClient(t, a, &logs, 5, nil)
	pollUntil(t, 30*time.Second, "the queue delivered", func() bool { return c.Pending() == 0 })
	require.Equal(t, good, a.takenDetails())
	require.Equal(t, len(codes)+1, a.postCount(), "whole batches: no split")
	for r, v := range rejected(c) {
		require.Zero(t, v, r)
	}
	require.Equal(t, 4, strings.Count(logs.String(), "level=ERROR msg=\"API refuses the boot service's credentials"))
}

// An older API answers 500 to a poisoned event, forever: after
// PoisonAfter 5xx in a row the batch is split too, the event that alone
// keeps failing while the API takes others is dropped (server_error), and
// the others are delivered in order. A poisoned event with nothing queued
// after it is kept (nothing shows the API works) until an event comes
// that the API takes.
func TestDeliveryFindsPoisonBehind5xx(t *testing.T) {
	a := startScriptedAPI(t, refuseMarked)
	marked := map[int]string{3: "POISON-500", 4: "POISON-500", 40: "POISON-500", 49: "POISON-500"}
	c, good := deliveryClient(t, a, nil, 50, marked)
	pollUntil(t, 30*time.Second, "all but the last event settled", func() bool { return c.Pending() == 1 })
	require.Equal(t, good, a.takenDetails(), "the good events, in order")
	require.Equal(t, 3.0, rejected(c)[rejectServerError])

	c.Record(Event{Time: time.Now(), MAC: "52:54:00:dd:00:01", Kind: EventCallback, Detail: "late"})
	pollUntil(t, 30*time.Second, "the queue delivered", func() bool { return c.Pending() == 0 })
	require.Equal(t, append(good, "late"), a.takenDetails())
	require.Equal(t, 4.0, rejected(c)[rejectServerError])
}

// An API that fails every event (its database is down) has no poison:
// however many rounds, nothing is dropped; once it recovers everything is
// delivered in order.
func TestDeliveryDropsNothingWhileAPIFails(t *testing.T) {
	a := startScriptedAPI(t, func(int, []Event) int { return http.StatusInternalServerError })
	c, good := deliveryClient(t, a, nil, 20, nil)
	pollUntil(t, 30*time.Second, "several poison searches", func() bool { return a.postCount() >= 10*DefaultPoisonAfter })
	require.Equal(t, 20, c.Pending())
	require.Zero(t, rejected(c)[rejectServerError])
	a.set(func(int, []Event) int { return http.StatusAccepted })
	pollUntil(t, 30*time.Second, "the queue delivered", func() bool { return c.Pending() == 0 })
	// All of them (a canary of a search the recovery interrupted may
	// have gone first).
	require.ElementsMatch(t, good, a.takenDetails())
	require.Zero(t, rejected(c)[rejectServerError])
}

// The backoff starts at Retry, doubles, has jitter and stops at RetryMax.
func TestDeliveryBackoff(t *testing.T) {
	c, err := NewAPIClient(APIConfig{BaseURL: "http://127.0.0.1:1", Retry: 100 * time.Millisecond, RetryMax: time.Second}, nil)
	require.NoError(t, err)
	c.queue = []Event{{}}
	for i, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		before := time.Now()
		c.backOff(0, answer{status: 500, err: fmt.Errorf("500")})
		after := time.Now()
		want *= time.Millisecond
		lo, hi := before.Add(want*4/5), after.Add(min(want*6/5, time.Second))
		require.False(t, c.retryAt.Before(lo) || c.retryAt.After(hi), "failure %d: retry in %v, want %v ±20%% capped at 1s",
			i+1, c.retryAt.Sub(before), want)
	}
	require.Equal(t, 6, c.streak, "six 5xx in a row on the batch at sequence 0")
	c.backOff(0, answer{err: fmt.Errorf("no answer")})
	require.Equal(t, 6, c.streak, "no answer is not a 5xx")
	c.backOff(0, answer{status: 429, err: fmt.Errorf("429"), after: 3 * time.Second})
	require.True(t, time.Until(c.retryAt) > 2*time.Second, "Retry-After is honoured")
}
