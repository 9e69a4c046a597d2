package rack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// control is the harness side of ipmi_sim's chassis_control program. The
// program is a bash script (chassisScript) that ipmi_sim runs as
//
//	<script> <node-dir> get power boot
//	<script> <node-dir> set power 1 boot pxe
//
// The script sends "<token> <node> <args...>" on one line to this server over
// 127.0.0.1 TCP (bash's /dev/tcp, no other tool needed) and relays the
// answer: "name:value" lines for get, then "ok" or "error: ...". The harness
// stays the parent of every QEMU, so nothing becomes a zombie, and the
// script returns only once the machine has been started or stopped.
type control struct {
	r     *Rack
	ln    net.Listener
	token string
	wg    sync.WaitGroup
	done  chan struct{}
}

func startControl(r *Rack) (*control, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rack: control listener: %w", err)
	}
	c := &control{r: r, ln: ln, token: randomHex(16), done: make(chan struct{})}
	c.wg.Add(1)
	go c.serve()
	return c, nil
}

func (c *control) port() int { return c.ln.Addr().(*net.TCPAddr).Port }

func (c *control) close() {
	close(c.done)
	_ = c.ln.Close()
	c.wg.Wait()
}

func (c *control) serve() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer conn.Close()
			c.handle(conn)
		}()
	}
}

func (c *control) handle(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return
	}
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != c.token {
		fmt.Fprintf(conn, "error: bad request\n")
		return
	}
	n := c.r.Node(f[1])
	if n == nil {
		fmt.Fprintf(conn, "error: no node %s\n", f[1])
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	// A slow BMC: ipmi_sim waits for its chassis program, so every IPMI
	// command that reaches it waits too.
	if err := n.hold(ctx); err != nil {
		fmt.Fprintf(conn, "error: stopping\n")
		return
	}
	if err := sleepCtx(ctx, n.currentFault().Delay); err != nil {
		fmt.Fprintf(conn, "error: stopping\n")
		return
	}
	out, err := n.chassis(f[2], f[3:])
	if err != nil {
		n.log.Warn("chassis control", "args", f[2:], "err", err)
		fmt.Fprintf(conn, "%serror: %v\n", out, err)
		return
	}
	fmt.Fprintf(conn, "%sok\n", out)
}

// hold waits while the node's fault holds requests.
func (n *Node) hold(ctx context.Context) error {
	n.mu.Lock()
	h := n.fault.Hold
	if h == nil {
		n.mu.Unlock()
		return nil
	}
	n.held++
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.held--
		n.mu.Unlock()
	}()
	select {
	case <-h:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// chassis runs one chassis_control request for the node.
func (n *Node) chassis(op string, args []string) (string, error) {
	switch op {
	case "get":
		var b strings.Builder
		for _, name := range args {
			switch name {
			case "power":
				v := 0
				if n.reportedPower() {
					v = 1
				}
				fmt.Fprintf(&b, "power:%d\n", v)
			case "boot":
				fmt.Fprintf(&b, "boot:%s\n", ipmiBootName(n.BootOverride().Device))
			default:
				// ipmi_sim reads only what it asked for; answer every
				// name so its parser never runs off the end.
				fmt.Fprintf(&b, "%s:0\n", name)
			}
		}
		return b.String(), nil
	case "set":
		for i := 0; i < len(args); i++ {
			name := args[i]
			val := func() (string, error) {
				if i+1 >= len(args) {
					return "", fmt.Errorf("set %s: missing value", name)
				}
				i++
				return args[i], nil
			}
			switch name {
			case "power":
				v, err := val()
				if err != nil {
					return "", err
				}
				switch v {
				case "1":
					if err := n.PowerOn(); err != nil {
						return "", err
					}
				case "0":
					n.PowerOff()
				default:
					return "", fmt.Errorf("set power %q", v)
				}
			case "reset":
				if _, err := val(); err != nil {
					return "", err
				}
				if err := n.Reset(); err != nil {
					return "", err
				}
			case "shutdown":
				// No ACPI agent in the guest: a soft shutdown is a power off.
				if _, err := val(); err != nil {
					return "", err
				}
				n.PowerOff()
			case "boot":
				v, err := val()
				if err != nil {
					return "", err
				}
				d, ok := ipmiBootDevice(v)
				if !ok {
					return "", fmt.Errorf("set boot %q", v)
				}
				n.SetBoot(Boot{Device: d})
			case "identify":
				// "identify <interval> <force>": nothing to light up.
				i += 2
			default:
				return "", fmt.Errorf("unknown chassis control %q", name)
			}
		}
		return "", nil
	}
	return "", fmt.Errorf("unknown operation %q", op)
}

// ipmi_sim's chassis program names for boot devices: "default" is the
// IPMI "force boot from default hard drive" selector.
func ipmiBootName(d BootDevice) string {
	switch d {
	case BootPXE:
		return "pxe"
	case BootDisk:
		return "default"
	case BootCD:
		return "cdrom"
	case BootBIOS:
		return "bios"
	}
	return "none"
}

func ipmiBootDevice(s string) (BootDevice, bool) {
	switch s {
	case "none":
		return BootNone, true
	case "pxe":
		return BootPXE, true
	case "default":
		return BootDisk, true
	case "cdrom":
		return BootCD, true
	case "bios":
		return BootBIOS, true
	}
	return "", false
}

const chassisScript = `#!/bin/bash
# chassis_control program for %[1]s, generated by rackcloud's lab/rack.
# ipmi_sim runs it as: chassis <node-dir> get <names...> | set <name> <value>...
# It forwards the request to the rack harness, which owns the machine.
shift
exec 3<>/dev/tcp/127.0.0.1/%[2]d || exit 1
printf '%%s %%s %%s\n' %[3]s %[1]s "$*" >&3
rc=1
while IFS= read -r -t 60 line <&3; do
	case $line in
	ok) rc=0 ;;
	error:*) echo "$line" >&2; rc=1 ;;
	*) echo "$line" ;;
	esac
done
exit $rc
`

// writeChassisScript writes the node's chassis program and returns the
// command line for lan.conf's chassis_control.
func (n *Node) writeChassisScript() (string, error) {
	p := filepath.Join(n.Dir, "chassis")
	s := fmt.Sprintf(chassisScript, n.Name, n.rack.ctl.port(), n.rack.ctl.token)
	if err := os.WriteFile(p, []byte(s), 0o700); err != nil {
		return "", err
	}
	if strings.ContainsAny(n.Dir, "\"\n") {
		return "", errors.New("node directory name has a quote or newline")
	}
	return shellQuote(p) + " " + shellQuote(n.Dir), nil
}
