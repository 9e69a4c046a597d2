package pxe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/rackcloud/rackcloud"
)

// Lease persistence. A lease is durable before its DHCPACK leaves: a
// restarted server never gives an acknowledged address to someone else.
// Changes are appended to StateDir/leases.journal and fsynced in groups
// (every change waiting while one fsync runs goes into the next), and the
// ACKs of a group are sent once it is on disk. When the journal has grown
// past the number of leases, a snapshot (StateDir/leases.json) is written
// atomically and the journal starts over. Loading reads the snapshot and
// replays the journal; a torn last journal line (a crash mid-write) is
// dropped, anything else unreadable stops the start with an error and
// leaves the files as they are.
const (
	snapshotName   = "leases.json"
	journalName    = "leases.journal"
	compactMinimum = 4096
)

type leaseFiles struct {
	dir     string
	journal *os.File

	mu      sync.Mutex
	durable uint64
	waiters []durableWaiter
}

type durableWaiter struct {
	seq uint64
	fn  func()
}

// open loads the snapshot and the journal from dir and opens the journal
// for appending.
func (l *leases) open(dir string) error {
	if err := l.loadSnapshot(filepath.Join(dir, snapshotName)); err != nil {
		return err
	}
	jname := filepath.Join(dir, journalName)
	lines, err := l.replayJournal(jname)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(jname, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("lease journal: %w", err)
	}
	l.mu.Lock()
	l.lines = lines
	l.files = &leaseFiles{dir: dir, journal: f, durable: l.seq}
	l.mu.Unlock()
	return nil
}

func (l *leases) loadSnapshot(name string) error {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	var f leaseFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("lease file %s is corrupt (left as is; move it away to start empty): %w", name, err)
	}
	if f.Version != leaseFileVersion {
		return fmt.Errorf("lease file %s: version %d, want %d", name, f.Version, leaseFileVersion)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ls := range f.Leases {
		if ls, ok := l.ours(ls); ok {
			l.setLocked(ls)
		}
	}
	return nil
}

// ours normalises a stored lease, or rejects one of another network.
func (l *leases) ours(ls Lease) (Lease, bool) {
	mac, err := rackcloud.NormalizeMAC(ls.MAC)
	if err != nil || !l.subnet.Contains(ls.IP) {
		return ls, false
	}
	ls.MAC = mac
	return ls, true
}

func (l *leases) replayJournal(name string) (int, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("lease journal: %w", err)
	}
	lines := bytes.Split(b, []byte{'\n'})
	// The last element follows the last newline: empty, or a line a crash
	// cut short, which was never acknowledged.
	lines = lines[:len(lines)-1]
	l.mu.Lock()
	defer l.mu.Unlock()
	for n, line := range lines {
		var e journalEntry
		if err := json.Unmarshal(line, &e); err != nil || (e.Op != opBind && e.Op != opDelete) {
			return 0, fmt.Errorf("lease journal %s line %d is corrupt (left as is): %q", name, n+1, line)
		}
		ls, ok := l.ours(e.Lease)
		if !ok {
			continue
		}
		if e.Op == opBind {
			l.setLocked(ls)
		} else {
			l.deleteLocked(ls.MAC, ls.IP)
		}
	}
	return len(lines), nil
}

// snapshotLocked encodes every lease.
func (l *leases) snapshotLocked() []byte {
	f := leaseFile{Version: leaseFileVersion, Leases: make([]Lease, 0, len(l.byMAC))}
	for _, ls := range l.byMAC {
		f.Leases = append(f.Leases, *ls)
	}
	sort.Slice(f.Leases, func(i, j int) bool { return f.Leases[i].IP.Less(f.Leases[j].IP) })
	b, _ := json.Marshal(f)
	return b
}

// flush writes the pending changes (or, when the journal has grown past
// the leases, a new snapshot) and fsyncs them, then releases the waiters
// of every change written. force writes a snapshot.
func (l *leases) flush(force bool) error {
	l.mu.Lock()
	files := l.files
	if files == nil {
		l.mu.Unlock()
		return nil
	}
	batch, seq := l.pending, l.seq
	l.pending = nil
	newLines := bytes.Count(batch, []byte{'\n'})
	compact := force || l.lines+newLines > compactMinimum+len(l.byMAC)
	var snap []byte
	if compact {
		snap = l.snapshotLocked()
	}
	l.mu.Unlock()

	var err error
	switch {
	case compact:
		if err = writeFileAtomic(filepath.Join(files.dir, snapshotName), snap); err == nil {
			if err = files.journal.Truncate(0); err == nil {
				err = files.journal.Sync()
			}
		}
		if err == nil {
			l.mu.Lock()
			l.lines = 0
			l.mu.Unlock()
		}
	case len(batch) > 0:
		if _, err = files.journal.Write(batch); err == nil {
			err = files.journal.Sync()
		}
		if err == nil {
			l.mu.Lock()
			l.lines += newLines
			l.mu.Unlock()
		}
	}
	if err != nil {
		// Keep the changes for the next try; their ACKs stay unsent.
		l.mu.Lock()
		if !compact {
			l.pending = append(batch, l.pending...)
		}
		l.mu.Unlock()
		return fmt.Errorf("leases not saved: %w", err)
	}
	files.release(seq)
	return nil
}

// release runs the waiters of changes up to seq.
func (f *leaseFiles) release(seq uint64) {
	f.mu.Lock()
	if seq > f.durable {
		f.durable = seq
	}
	var ready []durableWaiter
	keep := f.waiters[:0]
	for _, w := range f.waiters {
		if w.seq <= f.durable {
			ready = append(ready, w)
		} else {
			keep = append(keep, w)
		}
	}
	f.waiters = keep
	f.mu.Unlock()
	for _, w := range ready {
		w.fn()
	}
}

// whenDurable runs fn once change seq is on disk (at once if it is, or if
// the leases are not persisted at all).
func (l *leases) whenDurable(seq uint64, fn func()) {
	l.mu.Lock()
	files := l.files
	l.mu.Unlock()
	if files == nil {
		fn()
		return
	}
	files.mu.Lock()
	if seq <= files.durable {
		files.mu.Unlock()
		fn()
		return
	}
	files.waiters = append(files.waiters, durableWaiter{seq: seq, fn: fn})
	files.mu.Unlock()
}

// close writes a final snapshot and closes the journal.
func (l *leases) close() error {
	err := l.flush(true)
	l.mu.Lock()
	files := l.files
	l.files = nil
	l.mu.Unlock()
	if files != nil {
		if cerr := files.journal.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
