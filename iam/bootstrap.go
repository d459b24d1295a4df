package iam

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/openkps/kps"
)

// Bootstrap defaults of auth.md §3.7.
const (
	BootstrapDomain   = "Default"
	BootstrapAdmin    = "admin"
	AdminPasswordFile = "admin-password"
)

// Bootstrap creates the operator domain "Default" (ID DefaultDomainID), its default project
// named after the region and the user "admin" holding the admin role on the domain, when the
// store is empty (auth.md §3.7). The password is adminPassword (from KPS_ADMIN_PASSWORD) or,
// when that is empty, a generated one written once to <dataDir>/admin-password (mode 0600);
// passwordFile is then that path, for the caller to print, and "" otherwise. A non-empty store
// ignores all of it.
//
// A generated password file left by a start that did not finish bootstrapping is reused rather
// than replaced, so the file always holds the password that works. Bootstrap never logs.
func (s *Service) Bootstrap(ctx context.Context, dataDir, region, adminPassword string) (passwordFile string, err error) {
	if region == "" {
		return "", errors.New("iam: bootstrap: the region ID is empty")
	}
	if d, err := s.Store.DomainByName(ctx, BootstrapDomain); err != nil || d != nil {
		return "", err
	}
	path := filepath.Join(dataDir, AdminPasswordFile)
	wrote := false
	password := adminPassword
	if password == "" {
		if password, wrote, err = adminPasswordFromFile(path); err != nil {
			return "", err
		}
		passwordFile = path
	}
	if err := checkPasswordPolicy(password, BootstrapAdmin); err != nil {
		return "", err
	}
	hash, err := s.Params.Hash(ctx, password)
	if err != nil {
		return "", err
	}
	created, err := s.Store.Bootstrap(ctx, kps.Bootstrap{
		DomainID:          DefaultDomainID,
		DomainName:        BootstrapDomain,
		ProjectName:       region,
		AdminName:         BootstrapAdmin,
		AdminPasswordHash: hash,
	})
	if err != nil {
		return "", err
	}
	if !created {
		// Another start bootstrapped first. It may have used this very file (then the file
		// stays); if it used another password, the file this call wrote would mislead.
		if wrote && !s.adminPasswordWorks(ctx, password) {
			os.Remove(path)
		}
		return "", nil
	}
	return passwordFile, nil
}

func (s *Service) adminPasswordWorks(ctx context.Context, password string) bool {
	d, err := s.Store.DomainByName(ctx, BootstrapDomain)
	if err != nil || d == nil {
		return false
	}
	u, err := s.Store.UserByName(ctx, d.ID, BootstrapAdmin)
	if err != nil || u == nil {
		return false
	}
	ok, _, err := s.Params.Verify(ctx, u.PasswordHash, password)
	return ok && err == nil
}

// checkPasswordPolicy applies auth.md §12.1: 8–1024 bytes, not the user name.
func checkPasswordPolicy(pw, user string) error {
	if len(pw) < 8 || len(pw) > maxPasswordBytes {
		return errors.New("iam: the admin password must have 8 to 1024 bytes")
	}
	if pw == user {
		return errors.New("iam: the admin password must differ from the user name")
	}
	return nil
}

// adminPasswordFromFile returns the password in path, or generates one and writes it there
// (mode 0600, never replacing an existing file); wrote reports the latter.
func adminPasswordFromFile(path string) (pw string, wrote bool, err error) {
	if pw, err := readPasswordFile(path); !errors.Is(err, fs.ErrNotExist) {
		return pw, false, err
	}
	pw = generatePassword(24)
	won, err := createOnce(path, []byte(pw+"\n"))
	if err != nil {
		return "", false, fmt.Errorf("iam: write %s: %w", path, err)
	}
	if !won {
		pw, err = readPasswordFile(path)
		return pw, false, err
	}
	return pw, true, nil
}

func readPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	pw := strings.TrimSuffix(string(b), "\n")
	if pw == "" {
		return "", fmt.Errorf("iam: %s is empty; remove it to generate a new admin password", path)
	}
	return pw, nil
}

const passwordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// generatePassword returns n characters drawn uniformly from passwordAlphabet (about 5.95 bits
// each).
func generatePassword(n int) string { return kps.RandomString(passwordAlphabet, n) }

// createOnce writes content to path with mode 0600 unless path exists; won reports whether
// this call created it. It writes a temporary file and hard-links it into place, because
// link(2) fails on an existing target: two starts cannot both win, and nobody reads a partial
// file.
func createOnce(path string, content []byte) (won bool, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(content)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
