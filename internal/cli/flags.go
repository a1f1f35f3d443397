package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// flagSet declares a command's flags, each with a PATCHD_* variable and a
// default declared once, where the flag is added: the default sets the
// value, shows in the usage, and gives way to the variable.
type flagSet struct {
	fs       *flag.FlagSet
	out      io.Writer // where the usage goes: Stderr, or Stdout when asked for
	stdout   io.Writer
	getenv   func(string) string
	defaults map[string]string
	envErrs  map[string]error // the variables that did not parse, by flag
}

// newFlagSet returns the flags of a command; head writes what the usage
// says above the list of flags.
func (m *Main) newFlagSet(name string, head func(w io.Writer)) *flagSet {
	f := &flagSet{fs: flag.NewFlagSet("patchd "+name, flag.ContinueOnError), out: m.Stderr, stdout: m.Stdout, getenv: m.Getenv, defaults: map[string]string{}, envErrs: map[string]error{}}
	f.fs.SetOutput(m.Stderr)
	f.fs.Usage = func() {
		head(f.out)
		fmt.Fprintf(f.out, "\nEvery flag also reads the environment variable shown; a flag given on the command line wins.\n\nFlags:\n")
		f.printFlags()
	}
	return f
}

// envName is the variable of a flag: PATCHD_ and its name in capitals.
func envName(flag string) string {
	return "PATCHD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// add declares a flag whose value parses with v, set from the environment
// or def.
func (f *flagSet) add(v flag.Value, name, def, usage string) {
	f.fs.Var(v, name, usage)
	f.defaults[name] = def
	val := def
	if e := f.getenv(envName(name)); e != "" {
		val = e
	}
	if err := v.Set(val); err != nil {
		f.envErrs[name] = fmt.Errorf("%s=%q: %w", envName(name), val, err)
	}
}

// parse parses args. Mistakes are usage errors, with the usage on Stderr;
// --help is flag.ErrHelp, with the usage on Stdout, as asked for. A
// variable that does not parse is an error unless its flag is given.
func (f *flagSet) parse(args []string) error {
	var said bytes.Buffer
	stderr := f.out
	f.out = &said
	f.fs.SetOutput(&said)
	err := f.fs.Parse(f.joinBools(args))
	f.out = stderr
	f.fs.SetOutput(stderr)
	if errors.Is(err, flag.ErrHelp) {
		writeTo(f.stdout, said.Bytes())
		return err
	}
	writeTo(stderr, said.Bytes())
	if err != nil {
		return usageError{err}
	}
	f.fs.Visit(func(fl *flag.Flag) { delete(f.envErrs, fl.Name) })
	var errs []error
	f.fs.VisitAll(func(fl *flag.Flag) { // in the order of the flags' names
		if err := f.envErrs[fl.Name]; err != nil {
			errs = append(errs, err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	if f.fs.NArg() > 0 {
		f.fs.Usage()
		return usageError{fmt.Errorf("unexpected argument %q", f.fs.Arg(0))}
	}
	return nil
}

// joinBools joins a boolean flag and the value after it (--ui false) into
// one argument (--ui=false), as the usage writes them (--ui BOOL); the
// flag package would read false as the first argument after the flags. No
// command takes arguments after its flags, so the next word is the flag's
// when it reads as a boolean.
func (f *flagSet) joinBools(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" {
			return append(out, args[i+1:]...)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if name == a || strings.Contains(name, "=") || i+1 == len(args) {
			continue
		}
		if fl := f.fs.Lookup(name); fl == nil || !isBool(fl) {
			if fl != nil {
				i++ // the flag's value, whatever it looks like
				out = append(out, args[i])
			}
			continue
		}
		if _, err := strconv.ParseBool(args[i+1]); err == nil {
			i++
			out[len(out)-1] = a + "=" + args[i]
		}
	}
	return out
}

// writeTo writes b to w, if there is a w.
func writeTo(w io.Writer, b []byte) {
	if w != nil && len(b) > 0 {
		_, _ = w.Write(b)
	}
}

// help prints the usage on Stdout, as asked for.
func (f *flagSet) help() {
	f.out = f.stdout
	f.fs.Usage()
}

// usageErrorf prints the usage and returns a usage error.
func (f *flagSet) usageErrorf(format string, args ...any) error {
	f.fs.Usage()
	return usageError{fmt.Errorf(format, args...)}
}

// printFlags writes every flag with its variable and default.
func (f *flagSet) printFlags() {
	f.fs.VisitAll(func(fl *flag.Flag) {
		head := "  --" + fl.Name + " " + argName(fl)
		def := f.defaults[fl.Name]
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(f.out, "%-34s %s\n%-34s [env %s, default %s]\n", head, fl.Usage, "", envName(fl.Name), def)
	})
}

// argName names a flag's value in the usage.
func argName(f *flag.Flag) string {
	switch f.Name {
	case "addr":
		return "ADDR"
	case "db", "from", "to":
		return "FILE|URL"
	case "out", "in", "tokens", "tls-cert", "tls-key":
		return "FILE"
	case "url":
		return "URL"
	case "log-format":
		return "auto|json|text"
	case "log-level":
		return "LEVEL"
	}
	if isBool(f) {
		return "BOOL"
	}
	switch f.Value.(type) {
	case durationValue:
		return "DURATION"
	case byteSize:
		return "BYTES"
	case intValue:
		return "N"
	}
	return "VALUE"
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Flag values that parse like the documented defaults.

// stringValue is a flag.Value for a plain string.
type stringValue struct{ p *string }

func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v stringValue) Set(s string) error { *v.p = s; return nil }

type boolValue struct{ p *bool }

func (v boolValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatBool(*v.p)
}
func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("not a boolean")
	}
	*v.p = b
	return nil
}
func (v boolValue) IsBoolFlag() bool { return true }

type intValue struct{ p *int }

func (v intValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}
func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	*v.p = n
	return nil
}

type floatValue struct{ p *float64 }

func (v floatValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}
func (v floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return errors.New("not a number")
	}
	*v.p = f
	return nil
}

type durationValue struct{ p *time.Duration }

func (v durationValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}
func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration like 24h or 90m")
	}
	*v.p = d
	return nil
}

// lockTimeout declares --lock-timeout, how long a command waits for the
// database file's lock: a duration above zero.
func (f *flagSet) lockTimeout(p *time.Duration) {
	f.add(positiveDuration{durationValue{p}}, "lock-timeout", "1s", "how long to wait for the database file's lock")
}

// positiveDuration is a duration above zero.
type positiveDuration struct{ durationValue }

func (v positiveDuration) Set(s string) error {
	var d time.Duration
	if err := (durationValue{&d}).Set(s); err != nil {
		return err
	}
	if d <= 0 {
		return errors.New("must be above zero, like 1s")
	}
	*v.p = d
	return nil
}

// byteSize parses a byte count: digits, optionally followed by K, KB, KiB,
// M, MB, MiB, G, GB or GiB (all powers of 1024).
type byteSize struct{ p *int64 }

func (v byteSize) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatInt(*v.p, 10)
}
func (v byteSize) Set(s string) error {
	num := strings.TrimRight(s, "KMGiBkmgb ")
	unit := strings.ToUpper(strings.TrimSpace(s[len(num):]))
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil {
		return errors.New("not a byte size like 1048576 or 1MiB")
	}
	mult := map[string]int64{"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
		"M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}[unit]
	if mult == 0 {
		return fmt.Errorf("unknown unit %q", unit)
	}
	*v.p = n * mult
	return nil
}
