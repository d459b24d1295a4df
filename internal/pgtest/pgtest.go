// Package pgtest gives tests a PostgreSQL database of their own: a fresh schema on the server
// that KPS_TEST_POSTGRES names (.ci/run starts a throwaway one), dropped when the test ends.
// Test code only; it imports nothing from this repository.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// Env is the variable holding the URL of a PostgreSQL server tests may create schemas on.
const Env = "KPS_TEST_POSTGRES"

// URL returns the server's URL, or skips the test when Env is not set.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(Env)
	if u == "" {
		t.Skip(Env + " is not set")
	}
	return u
}

// Schema creates an empty schema for the test, dropped at its end, and returns the server's URL
// with that schema as the connections' search_path: whatever the test creates lands there, and
// tests running in parallel do not see each other.
func Schema(t testing.TB) string {
	t.Helper()
	base := URL(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", Env, err)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	rand.Read(b[:])
	schema := "kps_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	// Registered first, so it runs last: after the stores of the test are closed.
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
