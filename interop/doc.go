// Package interop holds the tests that drive OpenKPS with other people's clients: the official
// Huawei Cloud Go SDK (all 18 KPS operations, AK/SK, over HTTPS) and gophercloud (the Nova
// key pair API through the service's own Keystone token and catalog). It is a module of its
// own (go.mod here, `replace github.com/openkps/kps => ../`), so that these clients and what
// they pull in stay out of the service's go.sum and govulncheck report; .ci/run tests it
// beside the root module. (The OpenStack command-line client, a Debian package rather than a
// Go module, is driven from e2e: TestNovaOpenStackClient.)
//
// It has no code outside its tests (package interop_test, so that govulncheck -test follows
// their imports), which start the real service in process (daemon.Main) with a small harness of
// their own (service_test.go, a subset of e2e's).
package interop
