package vmctl

import (
	"context"
	"fmt"
	"strings"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// Consoler is the optional driver interface for what a guest wrote on
// its console: the serial console of a VM, the output of a container.
type Consoler interface {
	// Console returns at most max bytes, the newest, of the guest's
	// console output since it last started; truncated says older output
	// was left out.
	Console(ctx context.Context, t Target, s Spec, max int) (text string, truncated bool, err error)
}

var (
	_ Consoler = (*Libvirt)(nil)
	_ Consoler = (*Docker)(nil)
)

// tail keeps the last max bytes of s, cut at a line start when one is
// near so the first line shown is whole.
func tail(s string, max int) (string, bool) {
	if max <= 0 || len(s) <= max {
		return s, false
	}
	s = s[len(s)-max:]
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < 200 && i+1 < len(s) {
		s = s[i+1:]
	}
	return s, true
}

// Console implements Consoler: the serial console log (pool volume
// rc-<id>.console), as ConsoleLog reads it.
func (d *Libvirt) Console(ctx context.Context, t Target, s Spec, max int) (string, bool, error) {
	text, err := d.ConsoleLog(ctx, t, s)
	if err != nil {
		return "", false, err
	}
	text, cut := tail(text, max)
	return text, cut, nil
}

// tailBuffer keeps the newest bytes written to it, about max of them,
// so a container with gigabytes of output costs little to read.
type tailBuffer struct {
	max  int
	buf  []byte
	lost bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if b.max > 0 && len(b.buf) > 2*b.max+4096 {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max-1024:]...)
		b.lost = true
	}
	return len(p), nil
}

// Console implements Consoler: the container's stdout and stderr
// interleaved, as `docker logs` shows them.
func (d *Docker) Console(ctx context.Context, t Target, s Spec, max int) (string, bool, error) {
	out := &tailBuffer{max: max}
	err := d.do(ctx, t, "logs "+containerName(s.GuestID), func(c *client.Client) error {
		r, err := c.ContainerLogs(ctx, containerName(s.GuestID), client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
		if err != nil {
			return err
		}
		defer r.Close()
		// Containers are made without a TTY, so the stream is
		// multiplexed; both halves go to one buffer, in order.
		_, err = stdcopy.StdCopy(out, out, r)
		return err
	})
	if err != nil {
		return "", false, err
	}
	text, cut := tail(string(out.buf), max)
	return text, cut || out.lost, nil
}

// Console returns the newest max bytes of the guest's console output,
// read from its host through its driver.
func (c *Controller) Console(ctx context.Context, guestID string, max int) (string, bool, error) {
	g, err := store.GetGuest(ctx, c.cfg.Pool, guestID)
	if err != nil {
		return "", false, err
	}
	w, err := c.workOn(ctx, g)
	if err != nil {
		return "", false, err
	}
	cs, ok := w.driver.(Consoler)
	if !ok {
		return "", false, fmt.Errorf("%w: the %s driver keeps no console output", rackcloud.ErrInvalid, g.Kind)
	}
	return cs.Console(ctx, w.t, w.s, max)
}
