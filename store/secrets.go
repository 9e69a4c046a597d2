package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SecretKeySize is the size of a Sealer's keys (AES-256).
const SecretKeySize = 32

// Errors of Sealer.Open. Neither says anything of the content.
var (
	// ErrUnknownKey: the value was sealed under a key the sealer does not
	// hold (the key file lost it, or this server's file is older than the
	// one that rotated).
	ErrUnknownKey = errors.New("sealed with a key this server does not have")
	// ErrUnsealable: not a sealed value, tampered with, or bound to
	// another record.
	ErrUnsealable = errors.New("sealed secret does not open")
)

// Sealer encrypts secrets at rest (BMC passwords) with AES-256-GCM under a
// ring of keys: the first is the primary, which Seal uses; Open accepts any
// key of the ring, so that values sealed before a rotation still open
// until they are sealed again (RotateSecretKey). The sealed form is
// "rcs1:" + key ID + ":" + base64url(nonce || ciphertext), the key ID a
// fingerprint of the key (not the key); the additional data (a host's ID)
// binds a sealed value to its record. The single-key form "rcs0:" of
// earlier versions still opens. A Sealer from OpenSealerFile re-reads its
// file when it meets a key ID it does not hold (another process rotated).
// It is safe for concurrent use.
type Sealer struct {
	mu      sync.RWMutex
	primary string
	aeads   map[string]cipher.AEAD
	order   []string // key IDs, primary first

	file       string
	lastReload time.Time
}

// NewSealer returns a Sealer whose primary key is key; older keys only open.
func NewSealer(key []byte, older ...[]byte) (*Sealer, error) {
	s := &Sealer{}
	if err := s.setKeys(append([][]byte{key}, older...)); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sealer) setKeys(keys [][]byte) error {
	aeads := map[string]cipher.AEAD{}
	var order []string
	for i, key := range keys {
		if len(key) != SecretKeySize {
			return fmt.Errorf("secret key %d: want %d bytes, got %d", i+1, SecretKeySize, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return err
		}
		id := KeyID(key)
		if _, dup := aeads[id]; dup {
			continue
		}
		aeads[id] = aead
		order = append(order, id)
	}
	s.mu.Lock()
	s.primary, s.aeads, s.order = order[0], aeads, order
	s.mu.Unlock()
	return nil
}

// KeyID is the fingerprint that names key in sealed values.
func KeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("rackcloud sealer key id\x00"), key...))
	return hex.EncodeToString(sum[:6])
}

// Primary is the ID of the key Seal uses.
func (s *Sealer) Primary() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.primary
}

// KeyIDs lists the ring's key IDs, primary first.
func (s *Sealer) KeyIDs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]string(nil), s.order...)
}

const (
	sealedPrefixV0 = "rcs0:"
	sealedPrefixV1 = "rcs1:"
)

// Seal encrypts plaintext bound to aad under the primary key.
func (s *Sealer) Seal(plaintext string, aad []byte) (string, error) {
	s.mu.RLock()
	id, aead := s.primary, s.aeads[s.primary]
	s.mu.RUnlock()
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return sealedPrefixV1 + id + ":" + base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(plaintext), aad)), nil
}

// SealedKeyID returns the ID of the key sealed was sealed with ("" for
// the single-key form of earlier versions, or what is not sealed).
func SealedKeyID(sealed string) string {
	rest, ok := strings.CutPrefix(sealed, sealedPrefixV1)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, ":")
	return id
}

// Open decrypts what Seal returned with the same aad. A wrong key, aad or
// tampered data is ErrUnsealable; a key the ring lacks is ErrUnknownKey.
func (s *Sealer) Open(sealed string, aad []byte) (string, error) {
	if rest, ok := strings.CutPrefix(sealed, sealedPrefixV0); ok {
		// Earlier versions named no key: try each.
		for _, aead := range s.ring() {
			if out, err := openWith(aead, rest, aad); err == nil {
				return out, nil
			}
		}
		return "", ErrUnsealable
	}
	rest, ok := strings.CutPrefix(sealed, sealedPrefixV1)
	id, body, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return "", ErrUnsealable
	}
	aead := s.key(id)
	if aead == nil && s.reload() {
		aead = s.key(id)
	}
	if aead == nil {
		return "", fmt.Errorf("%w (key %s)", ErrUnknownKey, id)
	}
	return openWith(aead, body, aad)
}

func openWith(aead cipher.AEAD, body string, aad []byte) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(body)
	n := aead.NonceSize()
	if err != nil || len(b) < n {
		return "", ErrUnsealable
	}
	out, err := aead.Open(nil, b[:n], b[n:], aad)
	if err != nil {
		return "", ErrUnsealable
	}
	return string(out), nil
}

func (s *Sealer) key(id string) cipher.AEAD {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.aeads[id]
}

func (s *Sealer) ring() []cipher.AEAD {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]cipher.AEAD, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.aeads[id])
	}
	return out
}

// reloadEvery bounds how often an unknown key ID re-reads the key file.
var reloadEvery = 5 * time.Second

// reload re-reads the key file (at most every reloadEvery) and reports
// whether the ring changed.
func (s *Sealer) reload() bool {
	s.mu.Lock()
	if s.file == "" || time.Since(s.lastReload) < reloadEvery {
		s.mu.Unlock()
		return false
	}
	s.lastReload = time.Now()
	before := strings.Join(s.order, ",")
	s.mu.Unlock()
	keys, err := LoadSecretKeys(s.file)
	if err != nil || s.setKeys(keys) != nil {
		return false
	}
	return strings.Join(s.KeyIDs(), ",") != before
}

// OpenSealerFile returns a Sealer over the keys in path (LoadSecretKeys),
// creating the file with one fresh key when create is set and it does not
// exist. The sealer re-reads the file when it meets a key it lacks.
func OpenSealerFile(path string, create bool) (*Sealer, error) {
	keys, err := LoadSecretKeys(path)
	if errors.Is(err, os.ErrNotExist) && create {
		key := NewSecretKey()
		if err = writeKeyFile(path, [][]byte{key}, true); err == nil {
			keys = [][]byte{key}
		} else if errors.Is(err, os.ErrExist) {
			keys, err = LoadSecretKeys(path) // another process made it first
		}
	}
	if err != nil {
		return nil, err
	}
	s, err := NewSealer(keys[0], keys[1:]...)
	if err != nil {
		return nil, fmt.Errorf("secret key file %s: %w", path, err)
	}
	s.file, s.lastReload = path, time.Now()
	return s, nil
}

// NewSecretKey returns a fresh random key.
func NewSecretKey() []byte {
	key := make([]byte, SecretKeySize)
	_, _ = rand.Read(key)
	return key
}

// LoadSecretKeys reads a key file: one hex-encoded key per line, the
// primary first; blank lines and lines starting with # are ignored. A
// missing file is an os.ErrNotExist error.
func LoadSecretKeys(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, err := hex.DecodeString(line)
		if err != nil || len(key) != SecretKeySize {
			return nil, fmt.Errorf("secret key file %s line %d: want %d hex-encoded bytes", path, n, SecretKeySize)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("secret key file %s: no key", path)
	}
	return keys, nil
}

// writeKeyFile writes keys (primary first) to path with mode 0600:
// exclusively when excl (os.ErrExist if it is there), else by replacing
// it atomically.
func writeKeyFile(path string, keys [][]byte, excl bool) error {
	var b strings.Builder
	b.WriteString("# rackcloud secret keys: the first seals, every key opens (rackcloud secrets rotate)\n")
	for _, k := range keys {
		b.WriteString(hex.EncodeToString(k) + "\n")
	}
	if excl {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("secret key file: %w", err)
		}
		if _, err := f.WriteString(b.String()); err != nil {
			f.Close()
			return fmt.Errorf("secret key file: %w", err)
		}
		return f.Close()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("secret key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.WriteString(b.String())
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			return fmt.Errorf("secret key file: %w", err)
		}
		return nil
	}
	tmp.Close()
	return fmt.Errorf("secret key file: chmod: %w", err)
}

// Rotation is what RotateSecretKey did.
type Rotation struct {
	// NewKey and Retired are key IDs: the new primary, and the keys
	// dropped from the file (with prune).
	NewKey  string
	Retired []string
	// Resealed counts the secrets sealed again under the new key.
	Resealed int
}

// RotateSecretKey puts a fresh primary key at the head of the key file
// (keeping the old keys, so that every process that reads the file still
// opens every row), then seals every stored secret again under it in one
// transaction: either all are resealed or none. With prune, the old keys
// are then dropped from the file, which is safe because no row uses them
// any more. A secret that does not open with the file's keys stops the
// rotation before anything is written to the database, naming its row.
func RotateSecretKey(ctx context.Context, pool *pgxpool.Pool, path string, prune bool) (Rotation, error) {
	old, err := LoadSecretKeys(path)
	if err != nil {
		return Rotation{}, err
	}
	key := NewSecretKey()
	if err := writeKeyFile(path, append([][]byte{key}, old...), false); err != nil {
		return Rotation{}, err
	}
	s, err := NewSealer(key, old...)
	if err != nil {
		return Rotation{}, err
	}
	rot := Rotation{NewKey: s.Primary()}
	err = InTx(ctx, pool, func(tx pgx.Tx) error {
		rot.Resealed = 0
		// The same passwords under a new key: not a credentials change
		// (the bmc_generation trigger leaves in-flight polls valid).
		if _, err := tx.Exec(ctx, `SET LOCAL rackcloud.reseal = 'on'`); err != nil {
			return err
		}
		for _, c := range sealedColumns {
			n, err := resealColumn(ctx, tx, s, c)
			rot.Resealed += n
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return rot, err
	}
	if prune {
		for _, k := range old {
			if id := KeyID(k); id != rot.NewKey {
				rot.Retired = append(rot.Retired, id)
			}
		}
		if err := writeKeyFile(path, [][]byte{key}, false); err != nil {
			return rot, fmt.Errorf("every secret is resealed, but the old keys are still in the file: %w", err)
		}
	}
	return rot, nil
}

// sealedColumn is a column of sealed secrets: its table, the row's key
// (as text), and the additional data each secret is sealed with (aad
// prefix + key).
type sealedColumn struct {
	table, key, col, aadPrefix, what string
}

// sealedColumns are every sealed secret the store keeps.
var sealedColumns = []sealedColumn{
	{"hosts", "id::text", "bmc_password_sealed", "", "BMC password"},
	{"host_installs", "host_id::text", "config_sealed", aadHostInstall, "host config"},
	{"host_ca", "id::text", "key_sealed", aadHostCAKey, "host CA key"},
	{"host_ca", "id::text", "client_key_sealed", aadHostCAClient, "rackcloud's client key"},
	{"host_credentials", "host_id::text", "key_sealed", aadHostCredentials, "adopted host's client key"},
}

// Additional data of the host install and host CA secrets.
const (
	aadHostInstall  = "host_install/"
	aadHostCAKey    = "host_ca/key/"
	aadHostCAClient = "host_ca/client/"
)

// resealColumn seals every secret of c again under s's primary key.
func resealColumn(ctx context.Context, tx pgx.Tx, s *Sealer, c sealedColumn) (int, error) {
	rows, err := tx.Query(ctx, `SELECT `+c.key+`, `+c.col+` FROM `+c.table+`
		WHERE `+c.col+` <> '' ORDER BY 1 FOR UPDATE`)
	if err != nil {
		return 0, err
	}
	type row struct{ id, sealed string }
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.sealed); err != nil {
			rows.Close()
			return 0, err
		}
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, r := range all {
		aad := []byte(c.aadPrefix + r.id)
		plain, err := s.Open(r.sealed, aad)
		if err != nil {
			return n, fmt.Errorf("%s %s: %s: %w: nothing was resealed", c.table, r.id, c.what, err)
		}
		resealed, err := s.Seal(plain, aad)
		if err != nil {
			return n, err
		}
		if _, err := tx.Exec(ctx, `UPDATE `+c.table+` SET `+c.col+` = $2 WHERE `+c.key+` = $1`, r.id, resealed); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
