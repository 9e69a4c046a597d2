package tasks

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// listen holds one connection (outside the pool) that LISTENs on the
// engine's channels: wake-ups for the claim loop, events for followers and
// cancel requests for local runners. It reconnects after errors; while it
// is down, polling keeps everything going, only slower.
func (e *Engine) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := e.listenOnce(ctx)
		e.listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("task notifications lost; reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(e.cfg.PollInterval):
		}
	}
}

func (e *Engine) listenOnce(ctx context.Context) error {
	cfg := e.pool.Config().ConnConfig.Copy()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range []string{chanWake, chanEvents} {
		if _, err := conn.Exec(ctx, `LISTEN `+ch); err != nil {
			return err
		}
	}
	e.listening.Store(true)
	// Anything that happened while we were not listening.
	e.signal()
	e.hub.wakeAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch n.Channel {
		case chanWake:
			if e.kind(n.Payload) != nil {
				e.signal()
			}
		case chanEvents:
			id, typ, _ := strings.Cut(n.Payload, " ")
			e.hub.wake(id)
			if typ == EventCancelRequested {
				if r := e.runnerByID(id); r != nil {
					r.observeCancel()
				}
			}
		}
	}
}

// hub wakes the followers of a task.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

func newHub() *hub { return &hub{subs: map[string]map[chan struct{}]struct{}{}} }

func (h *hub) subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[id] == nil {
		h.subs[id] = map[chan struct{}]struct{}{}
	}
	h.subs[id][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[id], ch)
		if len(h.subs[id]) == 0 {
			delete(h.subs, id)
		}
		h.mu.Unlock()
	}
}

func (h *hub) wake(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (h *hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.subs {
		for ch := range s {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
