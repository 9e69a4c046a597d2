// Command rackcloud is the one binary of the system. Each subcommand lives in
// its own file of this package and registers itself with register; main only
// dispatches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand. run gets the arguments after the subcommand's
// name and a context that ends on SIGINT or SIGTERM.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("rackcloud: duplicate subcommand " + c.name)
	}
	commands[c.name] = c
}

// helpWanted is set when the command line asks for help (-h, -help,
// --help, help): help then goes to stdout and the exit status is 0, as
// for every verb.
var helpWanted bool

func wantsHelp(args []string) bool {
	for i, a := range args {
		switch {
		case a == "-h" || a == "-help" || a == "--help" || (a == "help" && i < 2):
			return true
		case a == "--":
			return false
		}
	}
	return false
}

// flagOutput is where flag sets print their usage and errors: stdout
// when help was asked for, else stderr.
func flagOutput() io.Writer {
	if helpWanted {
		return stdout
	}
	return stderr
}

// newFlagSet makes a command's flag set; positional names the
// arguments after the flags in its usage line ("NAME", "ID"...).
func newFlagSet(name, positional, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(flagOutput())
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s [flags]", name)
		if positional != "" {
			fmt.Fprintf(w, " %s", positional)
		}
		fmt.Fprintln(w)
		if summary != "" {
			fmt.Fprintf(w, "\n%s\n", summary)
		}
		fmt.Fprintf(w, "\nflags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: rackcloud <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nrun 'rackcloud <command> --help' for a command's flags\n")
}

func main() {
	os.Exit(runMain(os.Args[1:]))
}

// runMain runs the command line args (without the program's name) and
// returns the exit status: 0, 1 for a failed command, 2 for a usage
// error.
func runMain(args []string) int {
	helpWanted = wantsHelp(args)
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if a := args[0]; a == "-h" || a == "-help" || a == "--help" || a == "help" {
		usage(stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "rackcloud: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.run(ctx, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "rackcloud %s: %v\n", c.name, err)
		return 1
	}
	return 0
}
