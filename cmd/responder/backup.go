package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
)

// backupCommand is `responder backup`: a consistent copy of the SQLite
// database while responder runs, for images and hosts without sqlite3.
type backupCommand struct {
	cmd        *kingpin.CmdClause
	configFile *string
	dest       *string
}

func addBackupCommand(a *kingpin.Application) *backupCommand {
	cmd := a.Command("backup", "Copy the SQLite database (storage.dsn) to a new file, consistently, while responder runs; exit 0, or 1 with the problem.")
	return &backupCommand{
		cmd:        cmd,
		configFile: cmd.Flag("config.file", "Configuration file whose storage.dsn is copied; without it, the embedded default's (data/responder.db).").String(),
		dest:       cmd.Arg("file", "The copy: a new file (an existing one is not overwritten).").Required().String(),
	}
}

func (b *backupCommand) run(stdout, stderr io.Writer) int {
	cfg := config.Default()
	if *b.configFile != "" {
		var err error
		if cfg, err = config.LoadFile(*b.configFile); err != nil {
			for _, line := range problems(err) {
				fmt.Fprintln(stderr, line)
			}
			return 1
		}
	}
	driver, path, err := store.ParseDSN(cfg.Storage.DSN)
	if err != nil {
		fmt.Fprintf(stderr, "responder: storage.%v\n", err)
		return 1
	}
	if driver != "sqlite" {
		fmt.Fprintln(stderr, "responder: backup copies a SQLite database; back PostgreSQL up with its own tools (pg_dump, base backups)")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	info, err := sqlite.Backup(ctx, path, *b.dest)
	if err != nil {
		fmt.Fprintf(stderr, "responder: backup of %s: %v\n", path, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d bytes, %d notifications, %d schema migrations, integrity ok\n", *b.dest, info.Bytes, info.Notifications, info.Migrations)
	return 0
}
