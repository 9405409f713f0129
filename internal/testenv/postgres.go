package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver.
)

// PostgresDSNEnv names the environment variable with the DSN of an existing
// PostgreSQL server to use instead of a throwaway cluster. Its user must be
// allowed to create databases; each test still gets a database of its own.
const PostgresDSNEnv = "RESPONDER_TEST_POSTGRES_DSN"

// PostgresBinEnv names the environment variable with the directory holding
// initdb and pg_ctl, when they are neither in Debian's
// /usr/lib/postgresql/VERSION/bin nor on PATH.
const PostgresBinEnv = "RESPONDER_TEST_POSTGRES_BIN"

// postgresUser is the unprivileged account the cluster runs as when the
// tests run as root (initdb refuses root). Debian's package creates it.
const postgresUser = "postgres"

// PostgresSettings tune the throwaway test cluster, appended to its
// postgresql.conf. Durability is off: the cluster is deleted after the
// tests, and no test crashes PostgreSQL itself (the crash tests kill
// responder). Visibility, locking and constraint semantics are unchanged.
var PostgresSettings = []string{
	"listen_addresses = '127.0.0.1'",
	"unix_socket_directories = ''",
	"fsync = off",
	"synchronous_commit = off",
	"full_page_writes = off",
	// Each store opens up to 20 connections; the multi-replica tests run
	// three replicas beside the tests' own connections.
	"max_connections = 300",
	"shared_buffers = 64MB",
	"log_min_messages = warning",
	"log_min_error_statement = panic",
}

// shared is the package's cluster, started by the first StartPostgres of a
// test binary whose TestMain uses WithPostgres.
var shared struct {
	mu      sync.Mutex
	wrapped bool     // WithPostgres runs the tests: the cluster outlives them
	cluster *cluster // nil until first use
	err     error    // why the cluster could not start
	skip    string   // why the cluster is not available (binaries missing)
}

var dbSeq atomic.Int64

// TestingM is what testing.M and goleak.VerifyTestMain have in common.
type TestingM interface{ Run() int }

// WithPostgres wraps a test binary's testing.M so that all its tests share
// one throwaway PostgreSQL cluster, started by the first StartPostgres and
// stopped when the tests end:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(testenv.WithPostgres(m)) }
//
// Without it, StartPostgres starts a cluster for each test (slower, same
// behaviour).
func WithPostgres(m TestingM) TestingM { return withPostgres{m} }

type withPostgres struct{ m TestingM }

// Run implements TestingM.
func (w withPostgres) Run() int {
	shared.mu.Lock()
	shared.wrapped = true
	shared.mu.Unlock()
	code := w.m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster != nil {
		if err := shared.cluster.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stop postgres: %v\n", err)
		}
		shared.cluster = nil
	}
	return code
}

// StartPostgres returns the DSN of a new, empty database for the test, on a
// real PostgreSQL: the server named by RESPONDER_TEST_POSTGRES_DSN, or else a
// throwaway cluster (initdb + pg_ctl, on a free loopback port, its data under
// a temporary directory). Under -short the test is skipped; missing binaries
// skip it, or fail it under CI=true, as Binary does.
func StartPostgres(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: needs a real PostgreSQL, and -short is set")
	}
	admin := os.Getenv(PostgresDSNEnv)
	dropAfter := admin != ""
	if admin == "" {
		admin = clusterDSN(t)
	}
	name := fmt.Sprintf("responder_test_%d_%d", os.Getpid(), dbSeq.Add(1))
	if err := adminExec(t.Context(), admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	if dropAfter {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
				t.Logf("drop test database %s: %v", name, err)
			}
		})
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s does not parse as a URL", PostgresDSNEnv)
	}
	u.Path = "/" + name
	return u.String()
}

// clusterDSN returns the superuser DSN of the shared cluster (starting it on
// first use), or of a cluster of the test's own when no WithPostgres wraps
// the tests.
func clusterDSN(t testing.TB) string {
	t.Helper()
	bin := postgresBinDir(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.wrapped {
		c, err := startCluster(bin)
		if err != nil {
			t.Fatalf("start postgres: %v", err)
		}
		t.Cleanup(func() {
			if err := c.stop(); err != nil {
				t.Errorf("stop postgres: %v", err)
			}
		})
		return c.dsn()
	}
	if shared.cluster == nil && shared.err == nil {
		shared.cluster, shared.err = startCluster(bin)
	}
	if shared.err != nil {
		t.Fatalf("start postgres: %v", shared.err)
	}
	return shared.cluster.dsn()
}

// postgresBinDir finds the directory of initdb and pg_ctl: PostgresBinEnv,
// Debian's newest /usr/lib/postgresql/*/bin, or PATH.
func postgresBinDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(PostgresBinEnv); d != "" {
		for _, b := range []string{"initdb", "pg_ctl"} {
			if err := executable(filepath.Join(d, b)); err != nil {
				t.Fatalf("%s=%s: %s: %v", PostgresBinEnv, d, b, err)
			}
		}
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest version first: 16 sorts after 9.6 numerically, not as text.
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	for _, d := range dirs {
		if executable(filepath.Join(d, "initdb")) == nil && executable(filepath.Join(d, "pg_ctl")) == nil {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		// Debian links /usr/bin tools through wrappers; the real binaries
		// sit beside the resolved initdb.
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if d := filepath.Dir(p); executable(filepath.Join(d, "pg_ctl")) == nil {
			return d
		}
	}
	msg := fmt.Sprintf("PostgreSQL's initdb and pg_ctl not found in /usr/lib/postgresql/*/bin or on PATH, and neither %s nor %s is set", PostgresBinEnv, PostgresDSNEnv)
	if InCI() {
		t.Fatalf("%s; CI=true, so this is a failure: run `make test`, which installs it", msg)
	}
	t.Skipf("skipping: %s (run `make test` to install it)", msg)
	return ""
}

// versionOf reads the major version from .../postgresql/VERSION/bin.
func versionOf(dir string) int {
	v := filepath.Base(filepath.Dir(dir))
	major, _, _ := strings.Cut(v, ".")
	n, _ := strconv.Atoi(major)
	return n
}

// cluster is one throwaway PostgreSQL cluster.
type cluster struct {
	bin  string
	dir  string // temporary directory: data/, postgres.log
	port int
	cred *syscall.Credential // nil unless running as root
}

func (c *cluster) data() string { return filepath.Join(c.dir, "data") }

func (c *cluster) dsn() string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", postgresUser, c.port)
}

// startCluster initialises a cluster in a new temporary directory and starts
// it on a free loopback port.
func startCluster(bin string) (*cluster, error) {
	reapOrphans(bin)
	dir, err := os.MkdirTemp("", "responder-pg-")
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, dir: dir}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir) // the start error is the one to report
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil { //nolint:gosec // G306: read by later test runs, no secret.
		return nil, err
	}
	if os.Geteuid() == 0 {
		if c.cred, err = lookupCredential(postgresUser); err != nil {
			return nil, fmt.Errorf("initdb refuses to run as root, and %w", err)
		}
		if err := os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, err
		}
	}
	if out, err := c.run("initdb", "--pgdata="+c.data(), "--username="+postgresUser, "--auth=trust",
		"--encoding=UTF8", "--no-locale", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	conf := "\n# responder tests (internal/testenv)\n" + strings.Join(PostgresSettings, "\n") + "\n"
	f, err := os.OpenFile(filepath.Join(c.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, werr := f.WriteString(conf)
	if err := errors.Join(werr, f.Close()); err != nil {
		return nil, err
	}
	// The port is free when picked but may be taken before the server binds
	// it: try a few.
	var last error
	for range 3 {
		c.port, err = freePort()
		if err != nil {
			return nil, err
		}
		out, err := c.run("pg_ctl", "--pgdata="+c.data(), "--log="+filepath.Join(dir, "postgres.log"),
			"--wait", "--timeout=60", "-o", "-p "+strconv.Itoa(c.port), "start")
		if err == nil {
			ok = true
			return c, nil
		}
		log, _ := os.ReadFile(filepath.Join(dir, "postgres.log")) //nolint:gosec // G304: our own temp dir.
		last = fmt.Errorf("pg_ctl start: %w: %s\n%s", err, out, tail(string(log), 2000))
	}
	return nil, last
}

// stop shuts the cluster down at once (it is thrown away) and removes it.
func (c *cluster) stop() error {
	out, err := c.run("pg_ctl", "--pgdata="+c.data(), "--mode=immediate", "--wait", "stop")
	if err != nil {
		err = fmt.Errorf("pg_ctl stop: %w: %s", err, out)
	}
	return errors.Join(err, os.RemoveAll(c.dir))
}

// run runs one of the cluster's binaries, as the cluster's owner.
func (c *cluster) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...) //nolint:gosec // G204: the test runner's own PostgreSQL.
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// pg_ctl leaves the server running with our output pipes: do not wait
	// for them to close.
	cmd.WaitDelay = time.Second
	return cmd.CombinedOutput()
}

// lookupCredential returns the uid and gid of an account.
func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("there is no %q user to run it as (install Debian's postgresql package): %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// reapOrphans stops and removes the clusters of earlier test processes that
// died without stopping theirs (killed by a timeout, say).
func reapOrphans(bin string) {
	owners, _ := filepath.Glob(filepath.Join(os.TempDir(), "responder-pg-*", "owner.pid"))
	for _, f := range owners {
		b, err := os.ReadFile(f) //nolint:gosec // G304: a file this package wrote.
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid == os.Getpid() || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		c := &cluster{bin: bin, dir: filepath.Dir(f)}
		if os.Geteuid() == 0 {
			c.cred, _ = lookupCredential(postgresUser)
		}
		_ = c.stop() // best effort: an orphan that will not stop is left alone
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

// adminExec runs one statement on the server named by dsn.
func adminExec(ctx context.Context, dsn, stmt string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = db.ExecContext(ctx, stmt)
	return err
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
