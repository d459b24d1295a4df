package sshhost

import (
	"bytes"
	"context"
	"fmt"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
)

// Staged performs the jobs of rotations (kps-v3-api.md §8.3) with Executor's Execute, and
// every other job as Executor does. A staged job (kps.HostJob.Verify set) is three steps, each
// an ordinary job of Execute:
//
//  1. add: InstallKey goes in beside the keys the host holds, over the task's own login
//     (its write announced as any bind's, HostJob.BeforeWrite);
//  2. verify and remove: a fresh connection logs in with the new key's private key — the
//     verification — and removes RemoveKeys over that login;
//  3. only when that login is refused: InstallKey is taken out again over the task's own
//     login, so the host keeps its old key and only it, and the task fails with KPS.6603.
//
// Every step is idempotent (a key already in is not added twice, a key not there is not
// removed), so a task interrupted by a restart can run again from the start.
type Staged struct{ *Executor }

var _ kps.HostExecutor = Staged{}

// Execute implements kps.HostExecutor.
func (s Staged) Execute(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
	if job.Verify == nil {
		return s.Executor.Execute(ctx, job)
	}
	if job.DisablePassword || job.RestorePassword || job.Operation == kps.OpUnbind {
		return kps.HostResult{}, fmt.Errorf("sshhost: a staged job changes authorized_keys only")
	}
	// Step 3 of a retried task would take the new key out with the keys of its interrupted
	// attempt (unconfirmed, listed by the planner): the new key is never one to remove.
	remove := withoutKey(job.RemoveKeys, job.InstallKey)

	add := job
	add.RemoveKeys = nil
	// A host trusted on first use is pinned by the first step; the later ones require that key.
	var seen string
	if len(job.HostKeys) == 0 && job.PinHostKey != nil {
		pin := job.PinHostKey
		add.PinHostKey = func(ctx context.Context, key string) error {
			if err := pin(ctx, key); err != nil {
				return err
			}
			seen = key
			return nil
		}
	}
	if _, err := s.Executor.Execute(ctx, add); err != nil {
		return kps.HostResult{}, err
	}
	hostKeys := job.HostKeys
	if len(hostKeys) == 0 && seen != "" {
		hostKeys = []string{seen}
	}

	verify := job
	verify.HostKeys, verify.PinHostKey = hostKeys, nil
	verify.Login = *job.Verify
	verify.RemoveKeys = remove
	verify.BeforeWrite = nil // the new key is in: this step adds nothing
	res, err := s.Executor.Execute(ctx, verify)
	if err == nil || kps.ErrorCode(err) != kps.TaskAuthFailed {
		// Any other failure came after the login with the new key, or before any answer to
		// it (unreachable, say): the host keeps both keys, and the next task of the server
		// settles them (the add's write mark lists the new key).
		return res, err
	}

	back := job
	back.Operation = kps.OpUnbind
	back.InstallKey = ""
	back.RemoveKeys = []string{job.InstallKey}
	back.HostKeys, back.PinHostKey = hostKeys, nil
	back.BeforeWrite = nil
	if _, rerr := s.Executor.Execute(ctx, back); rerr != nil {
		return kps.HostResult{}, kps.Errorf(kps.ErrorCode(rerr),
			"Logging in to %s:%d as '%s' with the new key failed, and taking the new key out again failed too: %s",
			job.Address, job.Port, job.User, kps.ErrorMessage(rerr))
	}
	return kps.HostResult{}, kps.Errorf(kps.TaskAuthFailed,
		"Logging in to %s:%d as '%s' with the new key failed (does sshd read another authorized_keys file?): the new key was taken out again and the old key kept.",
		job.Address, job.Port, job.User)
}

// withoutKey returns keys without those whose identity (type and blob) is key's.
func withoutKey(keys []string, key string) []string {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return keys
	}
	out := make([]string, 0, len(keys))
	for _, x := range keys {
		if xk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(x)); err == nil && bytes.Equal(xk.Marshal(), k.Marshal()) {
			continue
		}
		out = append(out, x)
	}
	return out
}
