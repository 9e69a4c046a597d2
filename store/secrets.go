package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// SecretKeySize is the size of a Sealer's key (AES-256).
const SecretKeySize = 32

// Sealer encrypts secrets at rest (BMC passwords) with AES-256-GCM. The
// sealed form is "rcs0:" + base64url(nonce || ciphertext); the additional
// data (a host's ID) binds a sealed value to its record.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != SecretKeySize {
		return nil, fmt.Errorf("secret key: want %d bytes, got %d", SecretKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

const sealedPrefix = "rcs0:"

// Seal encrypts plaintext bound to aad.
func (s *Sealer) Seal(plaintext string, aad []byte) (string, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return sealedPrefix + base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(plaintext), aad)), nil
}

// Open decrypts what Seal returned with the same aad; a wrong key, aad or
// tampered data is an error that says nothing of the content.
func (s *Sealer) Open(sealed string, aad []byte) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(sealed, sealedPrefix))
	n := s.aead.NonceSize()
	if err != nil || !strings.HasPrefix(sealed, sealedPrefix) || len(b) < n {
		return "", errors.New("not a sealed secret")
	}
	out, err := s.aead.Open(nil, b[:n], b[n:], aad)
	if err != nil {
		return "", errors.New("sealed secret does not open with this key")
	}
	return string(out), nil
}

// LoadOrCreateSecretKey reads a hex-encoded key from path, creating the
// file (mode 0600) with a fresh random key when it does not exist.
func LoadOrCreateSecretKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, SecretKeySize)
		_, _ = rand.Read(key)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("secret key file: %w", err)
		}
		if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
			f.Close()
			return nil, fmt.Errorf("secret key file: %w", err)
		}
		return key, f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != SecretKeySize {
		return nil, fmt.Errorf("secret key file %s: want %d hex-encoded bytes", path, SecretKeySize)
	}
	return key, nil
}
