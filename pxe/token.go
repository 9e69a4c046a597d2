package pxe

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// TokenFileName is the file in Config.StateDir that keeps the hashes of
// the boot tokens handed out, so that a restarted boot service still
// accepts the callback of a boot it began.
const TokenFileName = "boot-tokens.json"

// Boot token bounds: each MAC keeps its current token and this many of
// the previous ones (so that an old boot's token is told apart as a
// replay), for up to maxTokenMACs MACs (the MAC whose token is oldest is
// forgotten first).
const (
	previousTokens = 4
	maxTokenMACs   = 4096
)

// Reasons a callback is refused (label values of
// rackcloud_boot_callbacks_refused_total).
const (
	tokenMissing  = "missing"
	tokenWrong    = "wrong"
	tokenReplayed = "replayed"
)

// tokenRecord is one token handed out: only its SHA-256 is ever kept.
type tokenRecord struct {
	SHA256 string    `json:"sha256"`
	Issued time.Time `json:"issued"`
}

type tokenFile struct {
	// MACs maps a MAC to its tokens, the current one first.
	MACs map[string][]tokenRecord `json:"macs"`
}

// bootTokens mints a token per netboot and checks the tokens callbacks
// present. It is safe for concurrent use.
type bootTokens struct {
	file string // "" keeps them in memory only
	log  *slog.Logger
	now  func() time.Time

	mu    sync.Mutex
	byMAC map[string][]tokenRecord
	gen   uint64 // changes made

	persistMu sync.Mutex
	written   uint64 // the generation on disk
}

// newBootTokens loads file (missing: none yet). A file that cannot be read
// or parsed must not stop booting: it is logged and moved aside, and the
// boots it knew have their callbacks refused.
func newBootTokens(file string, log *slog.Logger, now func() time.Time) *bootTokens {
	t := &bootTokens{file: file, log: log, now: now, byMAC: map[string][]tokenRecord{}}
	if file == "" {
		return t
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return t
	}
	var f tokenFile
	if err == nil {
		err = json.Unmarshal(b, &f)
	}
	if err != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", file, now().Unix())
		log.Error("boot token file unreadable; moved aside, callbacks of boots begun before are refused",
			"file", file, "moved_to", aside, "err", err)
		if err := os.Rename(file, aside); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Error("boot token file not moved aside", "err", err)
		}
		return t
	}
	for mac, recs := range f.MACs {
		if len(recs) > 0 {
			t.byMAC[mac] = recs[:min(len(recs), previousTokens+1)]
		}
	}
	return t
}

// mint makes mac's token for a new boot (32 random bytes, base64url) and
// returns it with its SHA-256 (hex); the previous token becomes a
// replayed one. It returns once the hash is on disk; an error means it
// is not (the token still works until the service restarts).
func (t *bootTokens) mint(mac string) (token, sum string, err error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", fmt.Errorf("boot token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(raw[:])
	sum = tokenSum(token)
	t.mu.Lock()
	recs := append([]tokenRecord{{SHA256: sum, Issued: t.now().UTC()}}, t.byMAC[mac]...)
	t.byMAC[mac] = recs[:min(len(recs), previousTokens+1)]
	if len(t.byMAC) > maxTokenMACs {
		t.evictLocked()
	}
	t.gen++
	gen, snapshot := t.gen, t.snapshotLocked()
	t.mu.Unlock()
	return token, sum, t.persist(gen, snapshot)
}

// evictLocked forgets the MAC whose current token is the oldest.
func (t *bootTokens) evictLocked() {
	var oldest string
	var at time.Time
	for mac, recs := range t.byMAC {
		if oldest == "" || recs[0].Issued.Before(at) {
			oldest, at = mac, recs[0].Issued
		}
	}
	delete(t.byMAC, oldest)
}

func (t *bootTokens) snapshotLocked() []byte {
	if t.file == "" {
		return nil
	}
	b, _ := json.Marshal(tokenFile{MACs: t.byMAC})
	return b
}

// persist writes snapshot unless a newer generation is on disk already.
func (t *bootTokens) persist(gen uint64, snapshot []byte) error {
	if t.file == "" {
		return nil
	}
	t.persistMu.Lock()
	defer t.persistMu.Unlock()
	if gen <= t.written {
		return nil
	}
	if err := writeFileAtomic(t.file, snapshot); err != nil {
		return fmt.Errorf("boot token file: %w", err)
	}
	t.written = gen
	return nil
}

// check says why token may not call back for mac: "" (it may: the
// current boot's token), tokenMissing, tokenWrong or tokenReplayed (an
// earlier boot's token). Every stored hash is compared, in constant time.
func (t *bootTokens) check(mac, token string) string {
	if token == "" {
		return tokenMissing
	}
	got, _ := hex.DecodeString(tokenSum(token))
	t.mu.Lock()
	recs := t.byMAC[mac]
	t.mu.Unlock()
	current, previous := 0, 0
	for i, r := range recs {
		want, err := hex.DecodeString(r.SHA256)
		if err != nil || len(want) != len(got) {
			continue
		}
		eq := subtle.ConstantTimeCompare(got, want)
		if i == 0 {
			current |= eq
		} else {
			previous |= eq
		}
	}
	switch {
	case current == 1:
		return ""
	case previous == 1:
		return tokenReplayed
	}
	return tokenWrong
}

func tokenSum(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// bearer returns the token of an "Authorization: Bearer" header value.
func bearer(h string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}
