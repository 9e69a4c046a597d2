package main

import (
	"bytes"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// runCLI runs a whole command line in-process, as main does, and returns
// its exit status and what it printed.
func runCLI(args ...string) (code int, out, errOut string) {
	var o, e bytes.Buffer
	stdout, stderr = &o, &e
	defer func() { stdout, stderr = os.Stdout, os.Stderr }()
	code = runMain(args)
	return code, o.String(), e.String()
}

// Help goes to stdout with exit status 0 for the program, every command
// and every verb; usage errors go to stderr with a non-zero status.
func TestHelpEverywhere(t *testing.T) {
	var lines [][]string
	for _, h := range []string{"--help", "-h", "help"} {
		lines = append(lines, []string{h})
	}
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		lines = append(lines, []string{n, "--help"}, []string{n, "-h"})
	}
	vs := make([]string, 0, len(verbs))
	for k := range verbs {
		vs = append(vs, k)
	}
	sort.Strings(vs)
	for _, k := range vs {
		lines = append(lines, append(strings.Fields(k), "--help"))
	}
	require.Greater(t, len(vs), 20, "the client verbs registered themselves")
	for _, args := range lines {
		code, out, errOut := runCLI(args...)
		cmd := "rackcloud " + strings.Join(args, " ")
		require.Equal(t, 0, code, "%s: exit status\nstdout:\n%s\nstderr:\n%s", cmd, out, errOut)
		require.Contains(t, out, "usage:", "%s prints its usage on stdout", cmd)
		require.Empty(t, errOut, "%s prints nothing on stderr", cmd)
	}

	// A verb's usage line names its positional arguments.
	_, out, _ := runCLI("token", "create", "--help")
	require.Contains(t, out, "usage: rackcloud token create [flags] NAME")
	require.Contains(t, out, "-role")
	_, out, _ = runCLI("host", "get", "--help")
	require.Contains(t, out, "ID")

	for _, args := range [][]string{{}, {"no-such-command"}, {"token"}, {"simrack"}, {"token", "create", "--no-such-flag"}} {
		code, out, errOut := runCLI(args...)
		require.NotEqual(t, 0, code, "rackcloud %v", args)
		require.NotEmpty(t, errOut, "rackcloud %v explains itself on stderr", args)
		require.NotContains(t, out, "usage:", "rackcloud %v: usage errors are not printed on stdout", args)
	}
}
