package sshhost

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A client of the SSH file transfer protocol, version 3 (draft-ietf-secsh-filexfer-02, the
// version OpenSSH's sftp-server speaks), with the OpenSSH extensions a task needs:
// posix-rename@openssh.com (rename(2), which replaces the target atomically), fsync@openssh.com
// (fsync(2) of an open handle) and home-directory (the user's home directory, from the
// password database as getent reads it; a server without it, an older OpenSSH, is left to
// the task script). It is the
// part of the protocol a task uses and no more: requests go out in batches and the answers
// are read back in one go, so that a batch costs one round trip; every answer is bounded
// (sftpMaxPacket), and nothing the host sends is kept beyond what the task reads.
//
// Not github.com/pkg/sftp: its OpenFile sends no attributes, so a file it creates gets the
// server's 0666 minus the umask (0644 under sshd's usual 022) until a chmod, where the staged
// file must be created 0600 (§6.4 step 3).

// Packet types.
const (
	fxpInit     = 1
	fxpVersion  = 2
	fxpOpen     = 3
	fxpClose    = 4
	fxpRead     = 5
	fxpWrite    = 6
	fxpLstat    = 7
	fxpFstat    = 8
	fxpSetstat  = 9
	fxpRemove   = 13
	fxpRealpath = 16
	fxpMkdir    = 14
	fxpStat     = 17
	fxpStatus   = 101
	fxpHandle   = 102
	fxpData     = 103
	fxpName     = 104
	fxpAttrs    = 105
	fxpExtended = 200
	fxpExtReply = 201
)

// Open flags, status codes and attribute flags.
const (
	fxfRead   = 0x01
	fxfWrite  = 0x02
	fxfCreate = 0x08
	fxfExcl   = 0x20

	fxOK           = 0
	fxEOF          = 1
	fxNoSuchFile   = 2
	fxPermission   = 3
	fxUnsupported  = 8
	attrSize       = 0x1
	attrUIDGID     = 0x2
	attrPerms      = 0x4
	attrACModTime  = 0x8
	attrExtended   = 0x80000000
	sftpMaxPacket  = 256<<10 + 1024 // OpenSSH's largest message, with room for a header
	sftpReadChunk  = 32 << 10       // what every server must answer in one DATA packet
	sftpReadWindow = 32             // READ requests in flight at once
)

// Extensions a task needs from the server.
const (
	extPosixRename = "posix-rename@openssh.com"
	extFsync       = "fsync@openssh.com"
	extHomeDir     = "home-directory"
)

// errNotSFTP is a subsystem whose answers are not the protocol: a shell start-up file that
// prints, a host that answers every command alike, a malformed or oversized packet.
var errNotSFTP = errors.New("the file transfer subsystem does not speak the protocol")

// sftpStatus is a server's SSH_FXP_STATUS answer other than OK.
type sftpStatus struct {
	code uint32
	msg  string
}

func (e *sftpStatus) Error() string { return fmt.Sprintf("sftp status %d (%s)", e.code, e.msg) }

// statusCode is the server's status code in err, or -1 when err is not a status (the session
// failed, or the answer was malformed).
func statusCode(err error) int {
	var s *sftpStatus
	if errors.As(err, &s) {
		return int(s.code)
	}
	return -1
}

// fileAttrs are the attributes the server reports.
type fileAttrs struct {
	flags    uint32
	size     uint64
	uid, gid uint32
	perm     uint32 // type and mode bits, as st_mode
}

// regular reports a regular file; the server sent the permissions (it always does).
func (a fileAttrs) regular() bool { return a.flags&attrPerms != 0 && a.perm&0o170000 == 0o100000 }
func (a fileAttrs) dir() bool     { return a.flags&attrPerms != 0 && a.perm&0o170000 == 0o040000 }

// sftpRequest is one request of a batch and, once the batch is done, its answer.
type sftpRequest struct {
	id     uint32
	body   []byte // the packet without its length, type and id
	typ    byte
	answer byte   // type of the answer
	data   []byte // the answer without its type and id
}

// sftpClient is one session of the subsystem.
type sftpClient struct {
	w    io.Writer
	r    *bufio.Reader
	ext  map[string]string
	next uint32
	out  []byte
	// later are requests whose answers nobody waits for (closing a handle that was read to
	// its end): they go out with the next batch.
	later []*sftpRequest
	// versionPending: INIT went out, its VERSION answer is still to be read.
	versionPending bool
}

// newSFTPClient sends INIT. The VERSION answer is read with the answers of the first batch
// (do), which goes out without waiting for it: a server takes requests after INIT in order,
// and one that answers anything but version 3 fails that batch with errNotSFTP.
func newSFTPClient(w io.Writer, r io.Reader) (*sftpClient, error) {
	c := &sftpClient{w: w, r: bufio.NewReaderSize(r, 64<<10), ext: map[string]string{}, versionPending: true}
	if _, err := w.Write([]byte{0, 0, 0, 5, fxpInit, 0, 0, 0, 3}); err != nil {
		return nil, err
	}
	return c, nil
}

// version reads the VERSION answer to INIT.
func (c *sftpClient) version() error {
	p, err := c.packet()
	if err != nil {
		return err
	}
	if len(p) < 5 || p[0] != fxpVersion || binary.BigEndian.Uint32(p[1:]) != 3 {
		return errNotSFTP
	}
	for b := p[5:]; len(b) > 0; {
		var name, data []byte
		var ok bool
		if name, b, ok = takeString(b); !ok {
			return errNotSFTP
		}
		if data, b, ok = takeString(b); !ok {
			return errNotSFTP
		}
		c.ext[string(name)] = string(data)
	}
	c.versionPending = false
	return nil
}

// has reports that the server offers an extension (at version "1", the one used here).
func (c *sftpClient) has(ext string) bool { return c.ext[ext] == "1" }

// packet reads one packet, length excluded.
func (c *sftpClient) packet() ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(c.r, l[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n == 0 || n > sftpMaxPacket {
		return nil, errNotSFTP
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.r, p); err != nil {
		return nil, err
	}
	return p, nil
}

// request builds a request; typ is the packet type, body what follows the id.
func (c *sftpClient) request(typ byte, body []byte) *sftpRequest {
	c.next++
	return &sftpRequest{id: c.next, typ: typ, body: body}
}

// do sends the requests in one write and reads their answers. It fails only when the session
// fails or an answer is not the protocol; each request's own outcome is in its answer.
func (c *sftpClient) do(reqs ...*sftpRequest) error {
	if len(c.later) > 0 {
		reqs = append(c.later, reqs...)
		c.later = nil
	}
	c.out = c.out[:0]
	for _, q := range reqs {
		c.out = binary.BigEndian.AppendUint32(c.out, uint32(5+len(q.body)))
		c.out = append(c.out, q.typ)
		c.out = binary.BigEndian.AppendUint32(c.out, q.id)
		c.out = append(c.out, q.body...)
	}
	if _, err := c.w.Write(c.out); err != nil {
		return err
	}
	if c.versionPending {
		if err := c.version(); err != nil {
			return err
		}
	}
	pending := make(map[uint32]*sftpRequest, len(reqs))
	for _, q := range reqs {
		pending[q.id] = q
	}
	for len(pending) > 0 {
		p, err := c.packet()
		if err != nil {
			return err
		}
		if len(p) < 5 {
			return errNotSFTP
		}
		q := pending[binary.BigEndian.Uint32(p[1:])]
		if q == nil {
			return errNotSFTP // an answer to nothing asked
		}
		delete(pending, q.id)
		q.answer, q.data = p[0], p[5:]
	}
	return nil
}

// status is the outcome of a request answered with a status: nil for OK.
func (q *sftpRequest) status() error {
	if q.answer != fxpStatus {
		return errNotSFTP
	}
	if len(q.data) < 4 {
		return errNotSFTP
	}
	code := binary.BigEndian.Uint32(q.data)
	if code == fxOK {
		return nil
	}
	msg, _, _ := takeString(q.data[4:])
	return &sftpStatus{code: code, msg: clip(string(msg), 200)}
}

// handle is the handle an OPEN was answered with.
func (q *sftpRequest) handle() (string, error) {
	if q.answer != fxpHandle {
		return "", q.status()
	}
	h, _, ok := takeString(q.data)
	if !ok || len(h) > 256 {
		return "", errNotSFTP
	}
	return string(h), nil
}

// attrs are the attributes a STAT, LSTAT or FSTAT was answered with.
func (q *sftpRequest) attrs() (fileAttrs, error) {
	if q.answer != fxpAttrs {
		return fileAttrs{}, q.status()
	}
	a, _, ok := parseAttrs(q.data)
	if !ok {
		return fileAttrs{}, errNotSFTP
	}
	return a, nil
}

// name is the one name a REALPATH or home-directory request was answered with.
func (q *sftpRequest) name() (string, error) {
	if q.answer != fxpName {
		return "", q.status()
	}
	if len(q.data) < 4 || binary.BigEndian.Uint32(q.data) != 1 {
		return "", errNotSFTP
	}
	n, _, ok := takeString(q.data[4:])
	if !ok {
		return "", errNotSFTP
	}
	return string(n), nil
}

// The requests a task makes.

func (c *sftpClient) stat(path string) *sftpRequest { return c.request(fxpStat, putString(nil, path)) }
func (c *sftpClient) realpath(path string) *sftpRequest {
	return c.request(fxpRealpath, putString(nil, path))
}
func (c *sftpClient) lstat(path string) *sftpRequest {
	return c.request(fxpLstat, putString(nil, path))
}
func (c *sftpClient) fstat(h string) *sftpRequest { return c.request(fxpFstat, putString(nil, h)) }
func (c *sftpClient) close(h string) *sftpRequest { return c.request(fxpClose, putString(nil, h)) }
func (c *sftpClient) remove(path string) *sftpRequest {
	return c.request(fxpRemove, putString(nil, path))
}

// open opens path with the protocol's flags; with create, the file is created with mode perm
// (the server's open(2) applies its umask, which only takes bits away).
func (c *sftpClient) open(path string, flags uint32, perm uint32) *sftpRequest {
	b := putString(nil, path)
	b = binary.BigEndian.AppendUint32(b, flags)
	if flags&fxfCreate != 0 {
		b = binary.BigEndian.AppendUint32(b, attrPerms)
		b = binary.BigEndian.AppendUint32(b, perm)
	} else {
		b = binary.BigEndian.AppendUint32(b, 0)
	}
	return c.request(fxpOpen, b)
}

// mkdir creates a directory with mode perm.
func (c *sftpClient) mkdir(path string, perm uint32) *sftpRequest {
	b := putString(nil, path)
	b = binary.BigEndian.AppendUint32(b, attrPerms)
	b = binary.BigEndian.AppendUint32(b, perm)
	return c.request(fxpMkdir, b)
}

// chmod sets the mode of path.
func (c *sftpClient) chmod(path string, perm uint32) *sftpRequest {
	b := putString(nil, path)
	b = binary.BigEndian.AppendUint32(b, attrPerms)
	b = binary.BigEndian.AppendUint32(b, perm)
	return c.request(fxpSetstat, b)
}

func (c *sftpClient) read(h string, off uint64, n uint32) *sftpRequest {
	b := putString(nil, h)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, n)
	return c.request(fxpRead, b)
}

func (c *sftpClient) write(h string, off uint64, data []byte) *sftpRequest {
	b := putString(make([]byte, 0, 4+len(h)+12+len(data)), h)
	b = binary.BigEndian.AppendUint64(b, off)
	b = putString(b, string(data))
	return c.request(fxpWrite, b)
}

// extended is a request of an extension: its name, then its own fields.
func (c *sftpClient) extended(name string, fields ...string) *sftpRequest {
	b := putString(nil, name)
	for _, f := range fields {
		b = putString(b, f)
	}
	return c.request(fxpExtended, b)
}

// posixRename renames from over to atomically (rename(2)).
func (c *sftpClient) posixRename(from, to string) *sftpRequest {
	return c.extended(extPosixRename, from, to)
}

// fsync flushes an open handle to disk.
func (c *sftpClient) fsync(h string) *sftpRequest { return c.extended(extFsync, h) }

// homeDir asks for the home directory of user (older servers answer with the session's
// user's whatever the name: it is the same user here).
func (c *sftpClient) homeDir(user string) *sftpRequest { return c.extended(extHomeDir, user) }

// readFile reads an open file to its end in batches of pipelined READs, failing with an
// *errOverflow past limit bytes. sizeHint (the size a STAT reported, or -1) lets a small file
// be read in one round trip: its data and the end of file are asked for at once.
func (c *sftpClient) readFile(h string, sizeHint int64, limit int, what string) ([]byte, error) {
	var buf []byte
	off := uint64(0)
	for {
		// The reads of this batch: chunks up to the expected end, then one at the expected end
		// to see the end of file, sftpReadWindow at most.
		var reqs []*sftpRequest
		var offs []uint64
		end := off + (sftpReadWindow-1)*sftpReadChunk // size unknown: a whole window
		if sizeHint >= 0 {
			end = uint64(sizeHint)
		}
		for o := off; len(reqs) < sftpReadWindow; {
			n := uint64(sftpReadChunk)
			if o < end && end-o < n {
				n = end - o
			}
			reqs, offs = append(reqs, c.read(h, o, uint32(n))), append(offs, o)
			if o >= end {
				break
			}
			o += n
		}
		if err := c.do(reqs...); err != nil {
			return nil, err
		}
		for i, q := range reqs {
			if offs[i] != off {
				break // an earlier read came back short: go on from where it ended
			}
			switch q.answer {
			case fxpData:
				d, _, ok := takeString(q.data)
				if !ok || len(d) > sftpReadChunk {
					return nil, errNotSFTP
				}
				if len(buf)+len(d) > limit {
					return nil, &errOverflow{fmt.Sprintf("the host sent more than %d MiB for %s, the most a task handles", limit>>20, what)}
				}
				buf = append(buf, d...)
				off += uint64(len(d))
			default:
				err := q.status()
				if statusCode(err) == fxEOF {
					return buf, nil
				}
				if err == nil {
					err = errNotSFTP // OK is no answer to a READ
				}
				return nil, err
			}
		}
		sizeHint = -1 // the file was not what the STAT said; read on chunk by chunk
	}
}

// firstHandle is the handle OpenSSH's sftp-server gives an OPEN while no other handle is open
// (the index of its handle table, four bytes big-endian). Reads of a file opened in the same
// batch are sent on it ahead of the answer: if the server answers the OPEN with another handle,
// or not at all, those reads fail (no handle of that name is open) and the file is read again
// on the handle it gave. It saves a round trip for every file a task reads or writes.
const firstHandle = "\x00\x00\x00\x00"

// readAhead are the READs of a whole file of size bytes on handle h: its chunks, then one at
// size, whose answer must be the end of file; none for a file larger than a window of reads
// (readFile reads those).
func (c *sftpClient) readAhead(h string, size int64) []*sftpRequest {
	if size < 0 || size > (sftpReadWindow-1)*sftpReadChunk {
		return nil
	}
	var reqs []*sftpRequest
	for off := int64(0); off < size; off += sftpReadChunk {
		reqs = append(reqs, c.read(h, uint64(off), uint32(min(sftpReadChunk, size-off))))
	}
	return append(reqs, c.read(h, uint64(size), sftpReadChunk))
}

// gathered is the content the READs of readAhead answered, when they read the whole file:
// each chunk full, then the end of file where it was expected. Anything else (a file of another
// size, a handle that was not the one predicted) is !ok, and the file is to be read again.
func gathered(reqs []*sftpRequest, limit int) (content []byte, ok bool) {
	for i, q := range reqs {
		last := i == len(reqs)-1
		if last {
			return content, q.answer == fxpStatus && statusCode(q.status()) == fxEOF
		}
		d, _, good := takeString(q.data)
		if q.answer != fxpData || !good || len(d) != int(binary.BigEndian.Uint32(q.body[len(q.body)-4:])) || len(content)+len(d) > limit {
			return nil, false
		}
		content = append(content, d...)
	}
	return content, false
}

// putString appends an SSH string (length, then bytes).
func putString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// takeString reads an SSH string off b.
func takeString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}

// parseAttrs reads the attributes of version 3.
func parseAttrs(b []byte) (a fileAttrs, rest []byte, ok bool) {
	u32 := func() uint32 {
		if len(b) < 4 {
			ok = false
			return 0
		}
		v := binary.BigEndian.Uint32(b)
		b = b[4:]
		return v
	}
	ok = true
	a.flags = u32()
	if a.flags&attrSize != 0 {
		hi, lo := u32(), u32()
		a.size = uint64(hi)<<32 | uint64(lo)
	}
	if a.flags&attrUIDGID != 0 {
		a.uid, a.gid = u32(), u32()
	}
	if a.flags&attrPerms != 0 {
		a.perm = u32()
	}
	if a.flags&attrACModTime != 0 {
		u32()
		u32()
	}
	if a.flags&attrExtended != 0 {
		for n := u32(); ok && n > 0; n-- {
			var s []byte
			for range 2 {
				if s, b, ok = takeString(b); !ok {
					return a, nil, false
				}
			}
			_ = s
		}
	}
	return a, b, ok
}
