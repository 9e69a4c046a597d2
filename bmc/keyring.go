package bmc

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/rackcloud/rackcloud"
)

// Errors of the Keyring.
var (
	// ErrUnknownKey: the sealed value names a key the keyring does not
	// hold (it was rotated out too early, or the configuration is wrong).
	ErrUnknownKey = errors.New("sealed with an unknown key")
	// ErrDecrypt: the sealed value was tampered with, or belongs to another
	// record (additional data differ).
	ErrDecrypt = errors.New("sealed value does not decrypt")
)

// sealPrefix versions the sealed format: rcs1:<key id>:<base64url(nonce|ciphertext)>.
const sealPrefix = "rcs1"

var keyIDRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Key is one AES key of a Keyring.
type Key struct {
	// ID names the key in sealed values.
	ID string
	// Secret is 16, 24 or 32 bytes (AES-128/192/256).
	Secret []byte
}

// Keyring seals secrets for storage with AES-GCM. The first key is the
// primary: Seal uses it; Open accepts any key of the ring. To rotate, put
// a new key first, Reseal every stored value, then drop the old key.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
}

// NewKeyring builds a keyring; keys[0] is the primary.
func NewKeyring(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: keyring needs at least one key", rackcloud.ErrInvalid)
	}
	k := &Keyring{primary: keys[0].ID, aeads: map[string]cipher.AEAD{}}
	for _, key := range keys {
		if !keyIDRe.MatchString(key.ID) {
			return nil, fmt.Errorf("%w: key ID %q (want 1-64 of A-Z a-z 0-9 _ . -)", rackcloud.ErrInvalid, key.ID)
		}
		if _, dup := k.aeads[key.ID]; dup {
			return nil, fmt.Errorf("%w: key ID %q twice", rackcloud.ErrInvalid, key.ID)
		}
		switch len(key.Secret) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("%w: key %q is %d bytes, want 16, 24 or 32", rackcloud.ErrInvalid, key.ID, len(key.Secret))
		}
		block, err := aes.NewCipher(key.Secret)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		k.aeads[key.ID] = aead
	}
	return k, nil
}

// ParseKeyring reads keys from configuration: "id=base64[,id=base64...]",
// primary first. Standard or URL base64, padded or not.
func ParseKeyring(spec string) (*Keyring, error) {
	var keys []Key
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, b64, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%w: key %q: want id=base64", rackcloud.ErrInvalid, id)
		}
		secret, err := decodeBase64(b64)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", rackcloud.ErrInvalid, id, err)
		}
		keys = append(keys, Key{ID: strings.TrimSpace(id), Secret: secret})
	}
	return NewKeyring(keys...)
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawURLEncoding.DecodeString(s)
}

// GenerateKey returns a new random 32-byte key as "id=base64", ready for
// ParseKeyring.
func GenerateKey(id string) (string, error) {
	if !keyIDRe.MatchString(id) {
		return "", fmt.Errorf("%w: key ID %q", rackcloud.ErrInvalid, id)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return id + "=" + base64.StdEncoding.EncodeToString(b), nil
}

// Primary is the ID of the key Seal uses.
func (k *Keyring) Primary() string { return k.primary }

// Seal encrypts s with the primary key. aad binds the sealed value to its
// record (e.g. the host ID): Open must be given the same aad.
func (k *Keyring) Seal(s Secret, aad []byte) (string, error) {
	aead := k.aeads[k.primary]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	ct := aead.Seal(nonce, nonce, []byte(s.Reveal()), k.additional(k.primary, aad))
	return sealPrefix + ":" + k.primary + ":" + base64.RawURLEncoding.EncodeToString(ct), nil
}

// additional authenticates the format version and the key ID too.
func (k *Keyring) additional(id string, aad []byte) []byte {
	return append([]byte(sealPrefix+":"+id+":"), aad...)
}

// Open decrypts a value made by Seal with any key of the ring.
func (k *Keyring) Open(sealed string, aad []byte) (Secret, error) {
	id, ct, err := splitSealed(sealed)
	if err != nil {
		return Secret{}, err
	}
	aead, ok := k.aeads[id]
	if !ok {
		return Secret{}, fmt.Errorf("open secret: %w %q", ErrUnknownKey, id)
	}
	if len(ct) < aead.NonceSize()+aead.Overhead() {
		return Secret{}, fmt.Errorf("open secret: %w: too short", ErrDecrypt)
	}
	pt, err := aead.Open(nil, ct[:aead.NonceSize()], ct[aead.NonceSize():], k.additional(id, aad))
	if err != nil {
		return Secret{}, fmt.Errorf("open secret: %w", ErrDecrypt)
	}
	return NewSecret(string(pt)), nil
}

// KeyID returns the ID of the key that sealed a value.
func KeyID(sealed string) (string, error) {
	id, _, err := splitSealed(sealed)
	return id, err
}

func splitSealed(sealed string) (id string, ct []byte, err error) {
	parts := strings.SplitN(sealed, ":", 3)
	if len(parts) != 3 || parts[0] != sealPrefix {
		return "", nil, fmt.Errorf("%w: not a sealed secret (want %s:<key>:<data>)", rackcloud.ErrInvalid, sealPrefix)
	}
	ct, err = base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", nil, fmt.Errorf("%w: sealed secret: %v", rackcloud.ErrInvalid, err)
	}
	return parts[1], ct, nil
}

// NeedsReseal reports whether sealed was made with a key other than the
// primary.
func (k *Keyring) NeedsReseal(sealed string) bool {
	id, err := KeyID(sealed)
	return err == nil && id != k.primary
}

// Reseal re-encrypts sealed with the primary key when another key sealed
// it; changed says whether the result differs from the input.
func (k *Keyring) Reseal(sealed string, aad []byte) (out string, changed bool, err error) {
	s, err := k.Open(sealed, aad)
	if err != nil {
		return "", false, err
	}
	if !k.NeedsReseal(sealed) {
		return sealed, false, nil
	}
	out, err = k.Seal(s, aad)
	return out, err == nil, err
}
