package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud/store"
)

func init() {
	register(command{name: "secrets", summary: "rotate the key that seals BMC passwords at rest ('secrets rotate')", run: dispatch("secrets", []verb{
		{"rotate", "--secret-key-file F --database-url URL [--prune]", "seal every stored secret again under a new key, in one transaction", secretsRotate},
	})})
}

// secretsRotate adds a new primary key to the key file and reseals every
// stored BMC password under it (store.RotateSecretKey). Servers reading
// the same file pick the new key up when they first meet it.
func secretsRotate(ctx context.Context, args []string) error {
	fs := newFlagSet("rackcloud secrets rotate", "", verbs["secrets rotate"].summary+
		". Servers that read the same key file open the new key's secrets by themselves; "+
		"--prune then drops the old keys from the file, once nothing is sealed with them.")
	var common commonFlags
	common.bind(fs)
	keyFile := fs.String("secret-key-file", "", "the servers' key file (env RACKCLOUD_SECRET_KEY_FILE)")
	prune := fs.Bool("prune", false, "drop the old keys from the file once every secret is resealed")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *keyFile == "" {
		return errUsage("rackcloud secrets rotate --secret-key-file F --database-url URL [--prune]")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	pool, err := store.NewPool(ctx, common.databaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	rot, err := store.RotateSecretKey(ctx, pool, *keyFile, *prune)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new key %s seals %d secret(s)", rot.NewKey, rot.Resealed)
	if len(rot.Retired) > 0 {
		fmt.Fprintf(stdout, "; retired %s", strings.Join(rot.Retired, ", "))
	}
	fmt.Fprintln(stdout)
	return nil
}
