// Package proc starts the lab's background processes (PostgreSQL,
// Prometheus, Alertmanager, ipmi_sim, ...) as children of the calling
// process, logs their output to a file, waits for them to be ready, and
// stops them by PID. It never kills anything by name.
package proc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spec describes a process to start.
type Spec struct {
	// Name is a short label used in errors.
	Name string
	Path string
	Args []string
	Dir  string
	Env  []string
	// Log receives stdout and stderr (appended); empty discards them.
	Log string
	// User, when set, runs the process as that system user (e.g. postgres,
	// which refuses to run as root).
	User string
}

// Process is a running child started by Start.
type Process struct {
	Spec Spec
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts the process. It is killed if this process dies
// (Pdeathsig), so a crashed test does not leave it behind.
func Start(s Spec) (*Process, error) {
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), s.Env...)
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.User != "" {
		cred, err := Credential(s.User)
		if err != nil {
			return nil, err
		}
		attr.Credential = cred
	}
	cmd.SysProcAttr = attr
	var logf *os.File
	if s.Log != "" {
		f, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		logf = f
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	p := &Process{Spec: s, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if logf != nil {
			logf.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Credential returns the uid/gid of a system user.
func Credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// PID returns the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends sig to the process by PID, waits up to grace for it to exit,
// then kills it. Safe to call twice and after the process has exited.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) {
	if done, _ := p.Exited(); done {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// WaitTCP polls addr until it accepts a connection, the process exits, or
// ctx ends. The log's tail is included in the error.
func (p *Process) WaitTCP(ctx context.Context, addr string) error {
	return p.WaitFunc(ctx, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// WaitFunc polls ready every 50 ms until it returns true, the process
// exits, or ctx ends.
func (p *Process) WaitFunc(ctx context.Context, ready func() bool) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if ready() {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v): %s", p.Spec.Name, p.err, p.LogTail(2000))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w: %s", p.Spec.Name, context.Cause(ctx), p.LogTail(2000))
		case <-t.C:
		}
	}
}

// LogTail returns up to n bytes from the end of the process's log.
func (p *Process) LogTail(n int) string {
	if p.Spec.Log == "" {
		return ""
	}
	b, _ := os.ReadFile(p.Spec.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
