package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
)

// certificate is the serving certificate of --tls-cert/--tls-key, read again on SIGHUP so that
// a renewed certificate is served without a restart. A reload that fails keeps the old one.
type certificate struct {
	certFile, keyFile string
	mu                sync.RWMutex
	cert              *tls.Certificate
}

// tlsFiles checks that --tls-cert and --tls-key come together.
func (c *Config) tlsFiles() (bool, error) {
	switch {
	case c.TLSCert == "" && c.TLSKey == "":
		return false, nil
	case c.TLSCert == "" || c.TLSKey == "":
		return false, errors.New("--tls-cert and --tls-key (KPS_TLS_CERT, KPS_TLS_KEY) go together: give both, or neither to serve plain HTTP")
	}
	return true, nil
}

func loadCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the certificate and key files; the key's content never appears in the error.
func (c *certificate) reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("loading the TLS certificate %s with the key %s: %w", c.certFile, c.keyFile, err)
	}
	c.mu.Lock()
	c.cert = &cert
	c.mu.Unlock()
	return nil
}

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, nil
}

// tlsConfig serves the reloadable certificate with TLS 1.2 or later.
func (c *certificate) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}
}

// ReloadTLS reads the TLS certificate and key again (on SIGHUP); without TLS it does nothing.
func (m *Main) ReloadTLS() error {
	if m.cert == nil {
		return nil
	}
	if err := m.cert.reload(); err != nil {
		return err
	}
	m.Log.Info("TLS certificate reloaded", "cert", m.cert.certFile)
	return nil
}
