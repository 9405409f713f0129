package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/version"

	"github.com/responder/responder/internal/app"
	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/routing"
)

// run parses the command line and runs one subcommand; it returns the exit
// code so that main calls os.Exit exactly once.
func run(args []string, stdout, stderr io.Writer) int {
	a := kingpin.New("responder", "Turns Alertmanager notifications into incident response: durable intake, Slack, PagerDuty, context and guarded remediation.")
	a.UsageWriter(stderr)
	a.ErrorWriter(stderr)
	serve := a.Command("serve", "Run the service.")
	serveConfig := serve.Flag("config.file", "Configuration file. Without it, the embedded default runs: SQLite under ./data, console only, remediation in dry-run.").String()
	listen := serve.Flag("web.listen-address", "Address to listen on for the webhook, the API and metrics.").Default("127.0.0.1:9096").String()
	logLevel := serve.Flag("log.level", "Only log messages with the given severity or above: debug, info, warn, error.").Default("info").Enum("debug", "info", "warn", "error")
	logFormat := serve.Flag("log.format", "Output format of log messages: logfmt or json.").Default("logfmt").Enum("logfmt", "json")

	check := a.Command("check-config", "Validate a configuration file and exit 0, or 1 with one line per problem.")
	checkConfig := check.Flag("config.file", "Configuration file; without it, the embedded default is checked.").String()

	routes := a.Command("routes", "Inspect the route tree.")
	routesTest := routes.Command("test", "Print the receivers and the decision trace for an alert with these labels, like amtool config routes test.")
	routesConfig := routesTest.Flag("config.file", "Configuration file; without it, the embedded default.").String()
	routesTime := routesTest.Flag("time", "Evaluate time intervals at this instant (RFC 3339); default now.").String()
	routesLabels := routesTest.Arg("labels", "Alert labels as label=value.").Strings()

	runbooks := addRunbooksCommands(a)
	deploy := addDeployCommand(a)
	backup := addBackupCommand(a)

	a.Command("version", "Print version information.")

	cmd, exit, err := parse(a, args)
	if exit >= 0 {
		return exit
	}
	if errors.Is(err, errNoCommand) {
		// Usage on stderr and 2, like `go` alone: the command line asked
		// for nothing, which a script must not take for success. --help
		// and `help` print the same and exit 0.
		a.Usage(nil)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "responder: %v (see --help)\n", err)
		return 2
	}
	if code, ok := runbooks.run(cmd, stdout, stderr); ok {
		return code
	}
	if cmd == deploy.record.FullCommand() {
		return deploy.run(stdout, stderr)
	}
	if cmd == backup.cmd.FullCommand() {
		return backup.run(stdout, stderr)
	}
	switch cmd {
	case serve.FullCommand():
		logger, err := newLogger(stderr, *logLevel, *logFormat)
		if err != nil {
			fmt.Fprintf(stderr, "responder: %v\n", err)
			return 2
		}
		return runServe(logger, *serveConfig, *listen)
	case check.FullCommand():
		return runCheckConfig(stdout, stderr, *checkConfig)
	case routesTest.FullCommand():
		return runRoutesTest(stdout, stderr, *routesConfig, *routesTime, *routesLabels)
	case "version":
		fmt.Fprintln(stdout, version.Print("responder"))
		return 0
	}
	return 2
}

// errNoCommand is parse's error for a command line without a command.
var errNoCommand = errors.New("no command")

// terminated is how parse stops kingpin where it would end the program.
type terminated struct{ code int }

// parse is a.Parse, except that it returns where kingpin would end the
// program: exit is then its exit code (-1 otherwise). kingpin ends it
// after printing the usage (--help, --help-long, --help-man, `help`) and
// after one of its own usage errors (`help frobnicate`); main must call
// os.Exit once, so the Terminate hook panics with terminated, recovered
// here. A hook that only recorded the code let kingpin carry on and print
// the usage a second time (--help), or the short usage after the long one
// or the man page. kingpin ends with 1 after its usage errors, which is 2
// here like every other wrong command line.
//
// A command line without a command is errNoCommand, not kingpin's usage
// and exit 0, so that run can tell it from --help.
func parse(a *kingpin.Application, args []string) (cmd string, exit int, err error) {
	a.Terminate(func(code int) { panic(terminated{code}) })
	a.Action(func(c *kingpin.ParseContext) error {
		// Actions run after --help and the help flags have been handled,
		// and before kingpin's own "command not specified".
		if c.SelectedCommand == nil {
			return errNoCommand
		}
		return nil
	})
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		t, ok := r.(terminated)
		if !ok {
			panic(r)
		}
		cmd, exit, err = "", 0, nil
		if t.code != 0 {
			exit = 2
		}
	}()
	cmd, err = a.Parse(args)
	return cmd, -1, err
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	o := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return slog.New(slog.NewTextHandler(w, o)), nil
}

func runServe(logger *slog.Logger, configFile, listen string) int {
	// Signals first, before anything that can take time: SIGHUP's default
	// action ends the process, and opening storage may take a while (a
	// PostgreSQL that does not answer, migrations). A SIGHUP from then on
	// waits in hup (one at most: more coalesce) until the app runs, which
	// reloads then; SIGTERM and SIGINT cancel ctx, which ends the start.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger.Info("starting responder", "version", version.Info(), "build", version.BuildContext())
	a, err := app.New(ctx, app.Options{ConfigFile: configFile, ListenAddress: listen, Logger: logger, ReloadSignals: hup})
	if err != nil {
		if ctx.Err() != nil {
			// Asked to stop while starting: nothing was accepted yet, and
			// the error is only the cancellation of what was in progress.
			logger.Info("stopped during startup", "err", err)
			return 0
		}
		logger.Error("cannot start", "err", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		logger.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

func runRoutesTest(stdout, stderr io.Writer, file, at string, labels []string) int {
	cfg, when, lset, code := alertArgs(stderr, file, at, labels)
	if code != 0 {
		return code
	}
	r, err := routing.NewRouter(cfg.Route, cfg.TimeIntervals)
	if err != nil {
		fmt.Fprintf(stderr, "responder: %v\n", err)
		return 1
	}
	routing.FormatTrace(stdout, r.Route(lset, when))
	return 0
}

// problems splits a (possibly joined) error into one line per problem.
func problems(err error) []string {
	var out []string
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	for line := range strings.SplitSeq(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// alertArgs reads what the commands that test an alert take: the config
// (the embedded default without a file), --time (default now) and the
// labels as name=value. A non-zero code is the exit status of a problem it
// has reported on stderr.
func alertArgs(stderr io.Writer, file, at string, labels []string) (cfg *config.Config, when time.Time, lset map[string]string, code int) {
	cfg = config.Default()
	if file != "" {
		var err error
		if cfg, err = config.LoadFile(file); err != nil {
			for _, line := range problems(err) {
				fmt.Fprintln(stderr, line)
			}
			return nil, when, nil, 1
		}
	}
	when = time.Now()
	if at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			fmt.Fprintf(stderr, "responder: --time must be RFC 3339, like 2026-11-25T10:00:00+01:00: %v\n", err)
			return nil, when, nil, 2
		}
		when = t
	}
	lset = map[string]string{}
	for _, kv := range labels {
		// As amtool config routes test reads its labels: an equality
		// matcher, so that quoting and escaping are those of the matchers
		// in the configuration. Cutting at the first "=" took
		// severity!=critical for a label named "severity!".
		m, err := amlabels.ParseMatcher(kv)
		if err != nil || m.Type != amlabels.MatchEqual {
			fmt.Fprintf(stderr, "responder: label %q must be name=value\n", kv)
			return nil, when, nil, 2
		}
		lset[m.Name] = m.Value
	}
	return cfg, when, lset, 0
}
