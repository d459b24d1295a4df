package iam

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// The made-up credentials and request of auth.md §7.
const (
	sigAK      = "KPSEXAMPLEAK00000001"
	sigSK      = "kpsExampleSecretKey000000000000000000001"
	sigDate    = "20250102T030405Z"
	sigProject = "0123456789abcdef0123456789abcdef"
	sigPath    = "/v3/" + sigProject + "/keypairs"
	sigBody    = "{\"keypair\":{\"name\":\"demo-key\"}}\n"
	sigUA      = "huaweicloud-usdk-go/3.0"
	sigEmpty   = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

var sigNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// sigExample is a request as the server receives it from the Go SDK (§7.1, §7.2), signed or
// not: X-Sdk-Date is set only when signed is true, as Sign sets it itself.
func sigExample(method, target, body string, signed bool) *http.Request {
	r := httptest.NewRequest(method, "https://kps.example.com"+target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json;charset=UTF-8")
	r.Header.Set("User-Agent", sigUA)
	r.Header.Set("X-Project-Id", sigProject)
	if signed {
		r.Header.Set("X-Sdk-Date", sigDate)
	}
	return r
}

// sigHex and sigHMAC are written out here rather than borrowed from signature.go, so that the
// fixed vectors check the code against the specification only.
func sigHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func sigHMAC(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// sigReason returns the reason key of a refusal, "" for nil, and fails on any other error.
func sigReason(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %v is not a *Failure", err)
	}
	if kps.ErrorCode(err) != kps.ErrBadCredentials {
		t.Fatalf("%v: code %s, want %s", err, kps.ErrorCode(err), kps.ErrBadCredentials)
	}
	return f.Reason
}

func sigVerify(t *testing.T, r *http.Request, body string) string {
	t.Helper()
	a, err := ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return sigReason(t, err)
	}
	return sigReason(t, VerifyRequest(r, []byte(body), a, sigSK, sigNow))
}

func sigMustParse(t *testing.T, h string) Authorization {
	t.Helper()
	a, err := ParseAuthorization(h)
	if err != nil {
		t.Fatalf("ParseAuthorization(%q): %v", h, err)
	}
	return a
}

// TestSignatureExample71 is the fixed vector of auth.md §7.1 with the clock frozen.
func TestSignatureExample71(t *testing.T) {
	const (
		bodyHash = "205459991c2e7edaa0ded6f3a6f33b9562747a276e81e4590dec9693adec340f"
		crHash   = "68f36ddb21b03631a381794cc60e916bdda201a7a068f5ae192ca33081de6cdf"
		sig      = "4729efee572da2a654ceea77c551843ae380e9fcadc9a049372daf1f5a2dad06"
		header   = "SDK-HMAC-SHA256 Access=KPSEXAMPLEAK00000001, SignedHeaders=user-agent;x-project-id;x-sdk-date, Signature=" + sig
		wantCR   = "POST\n" +
			"/v3/0123456789abcdef0123456789abcdef/keypairs/\n" +
			"\n" +
			"user-agent:huaweicloud-usdk-go/3.0\n" +
			"x-project-id:0123456789abcdef0123456789abcdef\n" +
			"x-sdk-date:20250102T030405Z\n" +
			"\n" +
			"user-agent;x-project-id;x-sdk-date\n" +
			bodyHash
		wantSTS = "SDK-HMAC-SHA256\n20250102T030405Z\n" + crHash
	)
	if len(sigBody) != 32 || sigHex(sigBody) != bodyHash {
		t.Fatalf("body: %d bytes, hash %s", len(sigBody), sigHex(sigBody))
	}

	r := sigExample(http.MethodPost, sigPath, sigBody, true)
	r.Header.Set("Authorization", header)
	a := sigMustParse(t, header)
	s, err := CheckRequest(r, []byte(sigBody), a, sigNow)
	if err != nil {
		t.Fatal(err)
	}
	if s.payloadHash != bodyHash {
		t.Errorf("payload hash %s", s.payloadHash)
	}
	cr, err := canonicalRequest(r, s.headers, a.SignedHeaders, s.payloadHash)
	if err != nil {
		t.Fatal(err)
	}
	if cr != wantCR {
		t.Errorf("canonical request:\n%s\nwant:\n%s", cr, wantCR)
	}
	if sigHex(cr) != crHash {
		t.Errorf("SHA-256(canonical request) = %s", sigHex(cr))
	}
	sts := stringToSign(a.Algorithm, sigDate, "", cr)
	if sts != wantSTS {
		t.Errorf("string to sign:\n%s\nwant:\n%s", sts, wantSTS)
	}
	if got := sigHMAC(sigSK, sts); got != sig {
		t.Errorf("signature %s", got)
	}
	if err := s.Verify(sigSK); err != nil {
		t.Errorf("Verify: %v", err)
	}

	// Sign produces the header of the Go SDK, byte for byte.
	u := sigExample(http.MethodPost, sigPath, sigBody, false)
	if err := Sign(u, []byte(sigBody), sigAK, sigSK, sigNow); err != nil {
		t.Fatal(err)
	}
	if got := u.Header.Get("Authorization"); got != header {
		t.Errorf("Sign:\n%s\nwant:\n%s", got, header)
	}
	if got := u.Header.Get("X-Sdk-Date"); got != sigDate {
		t.Errorf("Sign set X-Sdk-Date %q", got)
	}

	// Accepted at any time from 02:49:05 to 03:19:05, both included.
	for _, tt := range []struct {
		now  time.Time
		want string
	}{
		{time.Date(2025, 1, 2, 2, 49, 5, 0, time.UTC), ""},
		{time.Date(2025, 1, 2, 3, 19, 5, 0, time.UTC), ""},
		{time.Date(2025, 1, 2, 2, 49, 4, 999999999, time.UTC), ReasonDateOutOfWindow},
		{time.Date(2025, 1, 2, 3, 19, 5, 1, time.UTC), ReasonDateOutOfWindow},
		{time.Date(2025, 1, 2, 4, 19, 5, 0, time.FixedZone("UTC+1", 3600)), ""},
	} {
		if got := sigReason(t, VerifyRequest(r, []byte(sigBody), a, sigSK, tt.now)); got != tt.want {
			t.Errorf("at %v: %q, want %q", tt.now, got, tt.want)
		}
	}

	// One changed byte of the body, the path or the User-Agent breaks the signature.
	tampered := []string{"body", "path", "user-agent"}
	for _, what := range tampered {
		body := sigBody
		r := sigExample(http.MethodPost, sigPath, sigBody, true)
		r.Header.Set("Authorization", header)
		switch what {
		case "body":
			body = strings.Replace(body, "demo", "demO", 1)
		case "path":
			r.URL.Path = strings.Replace(r.URL.Path, "keypairs", "keypairz", 1)
		case "user-agent":
			r.Header.Set("User-Agent", "huaweicloud-usdk-go/3.1")
		}
		if got := sigVerify(t, r, body); got != ReasonSignatureMismatch {
			t.Errorf("tampered %s: %q", what, got)
		}
	}
}

// TestSignatureExample72 is the query-string vector of auth.md §7.2.
func TestSignatureExample72(t *testing.T) {
	const (
		wire   = "Zeta=z&empty&limit=10&marker=my%20key%2B1%2F%C3%BC&tag=b&tag=a&tag=A"
		wantCQ = "Zeta=z&empty=&limit=10&marker=my%20key%2B1%2F%C3%BC&tag=A&tag=a&tag=b"
		sig    = "9565dd9c261c7dd3ec7ac25d2257f051180efa35e4374cac78070bf53280f288"
		wantCR = "GET\n" +
			"/v3/0123456789abcdef0123456789abcdef/keypairs/\n" +
			wantCQ + "\n" +
			"user-agent:huaweicloud-usdk-go/3.0\n" +
			"x-project-id:0123456789abcdef0123456789abcdef\n" +
			"x-sdk-date:20250102T030405Z\n" +
			"\n" +
			"user-agent;x-project-id;x-sdk-date\n" +
			sigEmpty
	)
	header := "SDK-HMAC-SHA256 Access=" + sigAK + ", SignedHeaders=user-agent;x-project-id;x-sdk-date, Signature=" + sig

	// The SDK's parameters as url.Values encodes them (space as "+"), the SDK's own wire form,
	// and lower-case hex escapes all have the same canonical query and signature.
	params := url.Values{"marker": {"my key+1/ü"}, "limit": {"10"}, "tag": {"b", "a", "A"}, "empty": {""}, "Zeta": {"z"}}
	for _, raw := range []string{wire, params.Encode(), strings.ReplaceAll(wire, "%C3%BC", "%c3%bc")} {
		cq, err := canonicalQuery(raw)
		if err != nil || cq != wantCQ {
			t.Errorf("canonicalQuery(%q) = %q, %v", raw, cq, err)
		}
		r := sigExample(http.MethodGet, sigPath+"?"+raw, "", true)
		r.Header.Set("Content-Type", "application/json")
		a := sigMustParse(t, header)
		s, err := CheckRequest(r, nil, a, sigNow)
		if err != nil {
			t.Fatal(err)
		}
		cr, err := canonicalRequest(r, s.headers, a.SignedHeaders, s.payloadHash)
		if err != nil || cr != wantCR {
			t.Errorf("%s: canonical request:\n%s\nwant:\n%s (%v)", raw, cr, wantCR, err)
		}
		if got := sigHMAC(sigSK, "SDK-HMAC-SHA256\n"+sigDate+"\n"+sigHex(wantCR)); got != sig {
			t.Fatalf("the vector itself: %s", got)
		}
		if err := s.Verify(sigSK); err != nil {
			t.Errorf("%s: Verify: %v", raw, err)
		}

		u := sigExample(http.MethodGet, sigPath+"?"+raw, "", false)
		u.Header.Set("Content-Type", "application/json")
		if err := Sign(u, nil, sigAK, sigSK, sigNow); err != nil {
			t.Fatal(err)
		}
		if got := u.Header.Get("Authorization"); got != header {
			t.Errorf("%s: Sign:\n%s\nwant:\n%s", raw, got, header)
		}
	}
}

// TestSignatureExample73V11 is the optional V11 vector of auth.md §7.3 (§6.9).
func TestSignatureExample73V11(t *testing.T) {
	const (
		sig    = "d24457caac39984a833ead047e44ee02e8ac3e927b41689daeffc943b942c63b"
		header = "V11-HMAC-SHA256 Credential=KPSEXAMPLEAK00000001/20250102/my-region-1/kps, SignedHeaders=user-agent;x-project-id;x-sdk-date, Signature=" + sig
	)
	cfg := SignatureConfig{V11Region: "my-region-1"}
	request := func() *http.Request {
		r := sigExample(http.MethodGet, sigPath, "", true)
		r.Header.Set("Content-Type", "application/json")
		return r
	}

	a, err := cfg.ParseAuthorization(header)
	if err != nil {
		t.Fatal(err)
	}
	want := Authorization{
		Algorithm: AlgorithmV11HMACSHA256, AccessKey: sigAK, Scope: "20250102/my-region-1/kps",
		SignedHeaders: []string{"user-agent", "x-project-id", "x-sdk-date"}, Signature: a.Signature,
	}
	if !reflect.DeepEqual(a, want) || hex.EncodeToString(a.Signature) != sig || a.Header() != header {
		t.Errorf("parsed %#v %x", a, a.Signature)
	}
	if err := VerifyRequest(request(), nil, a, sigSK, sigNow); err != nil {
		t.Errorf("VerifyRequest: %v", err)
	}

	// The derived key is the hex string of the HKDF output (checked against the SDK, §6.9).
	s := request()
	if err := signWith(s, nil, Authorization{Algorithm: AlgorithmV11HMACSHA256, AccessKey: sigAK,
		Scope: "20250102/my-region-1/kps", SignedHeaders: want.SignedHeaders}, sigSK); err != nil {
		t.Fatal(err)
	}
	if got := s.Header.Get("Authorization"); got != header {
		t.Errorf("signWith:\n%s\nwant:\n%s", got, header)
	}

	if got := sigReason(t, sigErr(ParseAuthorization(header))); got != ReasonUnsupportedAlgorithm {
		t.Errorf("V11 disabled: %q", got)
	}
	for _, tt := range []struct {
		cfg    SignatureConfig
		header string
		want   string
	}{
		{SignatureConfig{V11Region: "other-region"}, header, ReasonAuthorizationMalformed},
		{SignatureConfig{V11Region: "my-region-1", V11Services: []string{"ecs"}}, header, ReasonAuthorizationMalformed},
		{SignatureConfig{V11Region: "my-region-1", V11Services: []string{"ecs", "kps"}}, header, ""},
		{cfg, strings.Replace(header, "/20250102/", "/2025012/", 1), ReasonAuthorizationMalformed},
		{cfg, strings.Replace(header, "/20250102/", "/20251302/", 1), ReasonAuthorizationMalformed},
		{cfg, strings.Replace(header, "/kps,", ",", 1), ReasonAuthorizationMalformed},
		{cfg, strings.Replace(header, "/kps,", "/kps/x,", 1), ReasonAuthorizationMalformed},
		{cfg, strings.Replace(header, "Credential=KPSEXAMPLEAK00000001/", "Credential=/", 1), ReasonAuthorizationMalformed},
		{cfg, strings.Replace(header, "Credential=", "Access=", 1), ReasonAuthorizationMalformed},
		{cfg, "SDK-HMAC-SHA256 Credential=KPSEXAMPLEAK00000001/20250102/my-region-1/kps, SignedHeaders=x-sdk-date, Signature=" + sig, ReasonAuthorizationMalformed},
	} {
		if got := sigReason(t, sigErr(tt.cfg.ParseAuthorization(tt.header))); got != tt.want {
			t.Errorf("%+v %q: %q, want %q", tt.cfg, tt.header, got, tt.want)
		}
	}

	// The scope's date must be X-Sdk-Date's; otherwise the usual failures apply.
	other := strings.Replace(header, "/20250102/", "/20250101/", 1)
	if got := sigReason(t, VerifyRequest(request(), nil, sigMustAuth(cfg.ParseAuthorization(other)), sigSK, sigNow)); got != ReasonAuthorizationMalformed {
		t.Errorf("scope of another day: %q", got)
	}
	r := request()
	r.Header.Set("User-Agent", "huaweicloud-usdk-go/3.1")
	if got := sigReason(t, VerifyRequest(r, nil, a, sigSK, sigNow)); got != ReasonSignatureMismatch {
		t.Errorf("tampered User-Agent: %q", got)
	}
	if got := sigReason(t, VerifyRequest(request(), nil, a, sigSK+"x", sigNow)); got != ReasonSignatureMismatch {
		t.Errorf("wrong SK: %q", got)
	}
	plain := a
	plain.Algorithm, plain.Scope = AlgorithmSDKHMACSHA256, ""
	if got := sigReason(t, VerifyRequest(request(), nil, plain, sigSK, sigNow)); got != ReasonSignatureMismatch {
		t.Errorf("V11 signature as SDK-HMAC-SHA256: %q", got)
	}
}

// sigErr drops the value of a (value, error) pair.
func sigErr[T any](_ T, err error) error { return err }

func sigMustAuth(a Authorization, err error) Authorization {
	if err != nil {
		panic(err)
	}
	return a
}

func TestParseAuthorization(t *testing.T) {
	const sig = "4729efee572da2a654ceea77c551843ae380e9fcadc9a049372daf1f5a2dad06"
	sigBytes, _ := hex.DecodeString(sig)
	names := func(n int) string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("x-h%d", i))
		}
		return strings.Join(s, ";")
	}
	valid := Authorization{
		Algorithm: AlgorithmSDKHMACSHA256, AccessKey: sigAK,
		SignedHeaders: []string{"user-agent", "x-project-id", "x-sdk-date"}, Signature: sigBytes,
	}
	ok := []struct {
		name, header string
		want         Authorization
	}{
		{"SDK form", "SDK-HMAC-SHA256 Access=KPSEXAMPLEAK00000001, SignedHeaders=user-agent;x-project-id;x-sdk-date, Signature=" + sig, valid},
		{"any order", "SDK-HMAC-SHA256 Signature=" + sig + ", SignedHeaders=user-agent;x-project-id;x-sdk-date, Access=KPSEXAMPLEAK00000001", valid},
		{"no spaces", "SDK-HMAC-SHA256 Access=KPSEXAMPLEAK00000001,SignedHeaders=user-agent;x-project-id;x-sdk-date,Signature=" + sig, valid},
		{"more spaces and a tab", "SDK-HMAC-SHA256 Access=KPSEXAMPLEAK00000001,   SignedHeaders=user-agent;x-project-id;x-sdk-date,\t Signature=" + sig, valid},
		{"upper-case hex", "SDK-HMAC-SHA256 Access=KPSEXAMPLEAK00000001, SignedHeaders=user-agent;x-project-id;x-sdk-date, Signature=" + strings.ToUpper(sig), valid},
		{"client order kept", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date;host;content-type, Signature=" + sig,
			Authorization{Algorithm: AlgorithmSDKHMACSHA256, AccessKey: "AK", SignedHeaders: []string{"x-sdk-date", "host", "content-type"}, Signature: sigBytes}},
		{"64 names", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=" + names(64) + ", Signature=" + sig,
			Authorization{Algorithm: AlgorithmSDKHMACSHA256, AccessKey: "AK", SignedHeaders: strings.Split(names(64), ";"), Signature: sigBytes}},
		{"token characters", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x_custom;a!#$%&'*+-.^_`|~9, Signature=" + sig,
			Authorization{Algorithm: AlgorithmSDKHMACSHA256, AccessKey: "AK", SignedHeaders: []string{"x_custom", "a!#$%&'*+-.^_`|~9"}, Signature: sigBytes}},
	}
	for _, tt := range ok {
		a, err := ParseAuthorization(tt.header)
		if err != nil || !reflect.DeepEqual(a, tt.want) {
			t.Errorf("%s: %#v %x, %v", tt.name, a, a.Signature, err)
		}
	}

	base := "SDK-HMAC-SHA256 Access=KPSEXAMPLEAK00000001, SignedHeaders=user-agent;x-sdk-date, Signature=" + sig
	bad := []struct {
		name, header, want string
	}{
		{"empty", "", ReasonAuthorizationMalformed},
		{"algorithm only", "SDK-HMAC-SHA256", ReasonAuthorizationMalformed},
		{"algorithm and space", "SDK-HMAC-SHA256 ", ReasonAuthorizationMalformed},
		{"two spaces after the algorithm", strings.Replace(base, " ", "  ", 1), ReasonAuthorizationMalformed},
		{"comma after the algorithm", strings.Replace(base, " ", ", ", 1), ReasonUnsupportedAlgorithm},
		{"SM3", strings.Replace(base, "SDK-HMAC-SHA256", "SDK-HMAC-SM3", 1), ReasonUnsupportedAlgorithm},
		{"ECDSA", strings.Replace(base, "SDK-HMAC-SHA256", "SDK-ECDSA-P256-SHA256", 1), ReasonUnsupportedAlgorithm},
		{"SM2", strings.Replace(base, "SDK-HMAC-SHA256", "SDK-SM2-SM3", 1), ReasonUnsupportedAlgorithm},
		{"V11 disabled", "V11-HMAC-SHA256 Credential=AK/20250102/r/kps, SignedHeaders=x-sdk-date, Signature=" + sig, ReasonUnsupportedAlgorithm},
		{"lower-case algorithm", strings.Replace(base, "SDK-HMAC-SHA256", "sdk-hmac-sha256", 1), ReasonUnsupportedAlgorithm},
		{"AWS", strings.Replace(base, "SDK-HMAC-SHA256", "AWS4-HMAC-SHA256", 1), ReasonUnsupportedAlgorithm},
		{"bearer", "Bearer abc", ReasonUnsupportedAlgorithm},
		{"no Access", "SDK-HMAC-SHA256 SignedHeaders=x-sdk-date, Signature=" + sig, ReasonAuthorizationMalformed},
		{"no SignedHeaders", "SDK-HMAC-SHA256 Access=AK, Signature=" + sig, ReasonAuthorizationMalformed},
		{"no Signature", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date", ReasonAuthorizationMalformed},
		{"empty Access", strings.Replace(base, "KPSEXAMPLEAK00000001", "", 1), ReasonAuthorizationMalformed},
		{"empty SignedHeaders", strings.Replace(base, "user-agent;x-sdk-date", "", 1), ReasonAuthorizationMalformed},
		{"empty Signature", strings.Replace(base, sig, "", 1), ReasonAuthorizationMalformed},
		{"item without =", strings.Replace(base, "Access=", "Access", 1), ReasonAuthorizationMalformed},
		{"duplicated Access", base + ", Access=AK2", ReasonAuthorizationMalformed},
		{"duplicated Signature", base + ", Signature=" + sig, ReasonAuthorizationMalformed},
		{"unknown item", base + ", Region=x", ReasonAuthorizationMalformed},
		{"Credential item", strings.Replace(base, "Access=", "Credential=", 1), ReasonAuthorizationMalformed},
		{"lower-case item name", strings.Replace(base, "Access=", "access=", 1), ReasonAuthorizationMalformed},
		{"trailing comma", base + ",", ReasonAuthorizationMalformed},
		{"empty item", strings.Replace(base, ", Signature", ", , Signature", 1), ReasonAuthorizationMalformed},
		{"space before comma", strings.Replace(base, "KPSEXAMPLEAK00000001,", "KPSEXAMPLEAK00000001 ,", 1), ReasonAuthorizationMalformed},
		{"space in AK", strings.Replace(base, "KPSEXAMPLE", "KPS EXAMPLE", 1), ReasonAuthorizationMalformed},
		{"control byte in AK", strings.Replace(base, "KPSEXAMPLE", "KPS\x01EXAMPLE", 1), ReasonAuthorizationMalformed},
		{"non-ASCII AK", strings.Replace(base, "KPSEXAMPLE", "KPSÉXAMPLE", 1), ReasonAuthorizationMalformed},
		{"63 hex digits", strings.Replace(base, sig, sig[1:], 1), ReasonAuthorizationMalformed},
		{"65 hex digits", strings.Replace(base, sig, sig+"0", 1), ReasonAuthorizationMalformed},
		{"not hex", strings.Replace(base, sig, "g"+sig[1:], 1), ReasonAuthorizationMalformed},
		{"base64 signature", strings.Replace(base, sig, "RynvN1ctoqZUzup3xVGEOuOA+fytyaBJNy2vH1otrQY=", 1), ReasonAuthorizationMalformed},
		{"empty name", strings.Replace(base, "user-agent;", "user-agent;;", 1), ReasonAuthorizationMalformed},
		{"leading semicolon", strings.Replace(base, "=user-agent", "=;user-agent", 1), ReasonAuthorizationMalformed},
		{"trailing semicolon", strings.Replace(base, "x-sdk-date,", "x-sdk-date;,", 1), ReasonAuthorizationMalformed},
		{"upper-case name", strings.Replace(base, "user-agent", "User-Agent", 1), ReasonAuthorizationMalformed},
		{"space in name", strings.Replace(base, "user-agent;", "user-agent; ", 1), ReasonAuthorizationMalformed},
		{"colon in name", strings.Replace(base, "user-agent", ":authority", 1), ReasonAuthorizationMalformed},
		{"duplicated name", strings.Replace(base, "user-agent;x-sdk-date", "x-sdk-date;user-agent;x-sdk-date", 1), ReasonAuthorizationMalformed},
		{"65 names", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=" + names(65) + ", Signature=" + sig, ReasonAuthorizationMalformed},
		{"over 8 KiB", base + strings.Repeat(" ", MaxAuthorizationBytes-len(base)+1), ReasonAuthorizationMalformed},
		{"over 8 KiB, unknown algorithm", "X " + strings.Repeat("a", MaxAuthorizationBytes), ReasonAuthorizationMalformed},
	}
	for _, tt := range bad {
		_, err := ParseAuthorization(tt.header)
		if got := sigReason(t, err); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}

	// The longest accepted header is exactly 8 KiB.
	long := "SDK-HMAC-SHA256 Access=" + strings.Repeat("A", MaxAuthorizationBytes-len(base)+len("KPSEXAMPLEAK00000001")) +
		", SignedHeaders=user-agent;x-sdk-date, Signature=" + sig
	if len(long) != MaxAuthorizationBytes {
		t.Fatalf("test header is %d bytes", len(long))
	}
	if _, err := ParseAuthorization(long); err != nil {
		t.Errorf("8 KiB header: %v", err)
	}
}

func TestIsSignatureScheme(t *testing.T) {
	for h, want := range map[string]bool{
		"SDK-HMAC-SHA256 Access=AK":         true,
		"SDK-HMAC-SM3 Access=AK":            true,
		"SDK-ECDSA-P256-SHA256 Access=AK":   true,
		"SDK-SM2-SM3 Access=AK":             true,
		"V11-HMAC-SHA256 Credential=AK/x":   true,
		"SDK-HMAC-SHA256 ":                  true,
		"SDK-HMAC-SHA256":                   false,
		"SDK-HMAC-SHA256,Access=AK":         false,
		"SDK-HMAC-SHA2566 Access=AK":        false,
		"sdk-hmac-sha256 Access=AK":         false,
		"Bearer token":                      false,
		"Basic dXNlcjpwYXNz":                false,
		"":                                  false,
		" SDK-HMAC-SHA256 Access=AK":        false,
		"AWS4-HMAC-SHA256 Credential=AK/..": false,
	} {
		if got := IsSignatureScheme(h); got != want {
			t.Errorf("IsSignatureScheme(%q) = %v", h, got)
		}
	}
}

// TestSignatureReasons produces every KPS.6102 reason of auth.md §11.4 that belongs to AK/SK
// requests and checks its exact message.
func TestSignatureReasons(t *testing.T) {
	// Transcribed from §11.4, independently of signatureReasonText.
	texts := map[string]string{
		"conflicting-credentials": "both X-Auth-Token and an AK/SK signature were sent",
		"authorization-malformed": "the Authorization header is malformed",
		"unsupported-algorithm":   "the signing algorithm is not supported",
		"date-malformed":          "X-Sdk-Date is missing or malformed",
		"date-out-of-window":      "X-Sdk-Date is more than 15 minutes away from the server time",
		"date-not-signed":         "X-Sdk-Date is not a signed header",
		"signed-header-missing":   "signed header x-project-id is not present",
		"unsigned-payload":        "an unsigned payload is not accepted for a request with a body",
		"payload-hash-mismatch":   "X-Sdk-Content-Sha256 does not match the body",
		"access-key-invalid":      "the access key is unknown or inactive",
		"credential-expired":      "the temporary credential has expired",
		"signature-mismatch":      "the request signature does not match",
		"security-token-invalid":  "the security token is missing or invalid",
		"replayed":                "the request was already received",
	}
	// signed returns a request signed by Sign after edit ran, and its body.
	signed := func(t *testing.T, body string, edit func(r *http.Request)) (*http.Request, []byte) {
		r := sigExample(http.MethodPost, sigPath, body, false)
		if edit != nil {
			edit(r)
		}
		if err := Sign(r, []byte(body), sigAK, sigSK, sigNow); err != nil {
			t.Fatal(err)
		}
		return r, []byte(body)
	}
	verify := func(r *http.Request, body []byte, a Authorization) error {
		return VerifyRequest(r, body, a, sigSK, sigNow)
	}
	auth := func(t *testing.T, r *http.Request) Authorization {
		return sigMustParse(t, r.Header.Get("Authorization"))
	}

	cases := []struct {
		reason string
		err    func(t *testing.T) error
	}{
		{"conflicting-credentials", func(*testing.T) error { return SignatureFailure(ReasonConflictingCredentials) }},
		{"authorization-malformed", func(*testing.T) error { return sigErr(ParseAuthorization("SDK-HMAC-SHA256 Access=AK")) }},
		{"authorization-malformed", func(t *testing.T) error {
			r, body := signed(t, sigBody, nil)
			r.URL.RawQuery = "a=1;b=2" // url.ParseQuery refuses it (§6.3 step 6)
			return verify(r, body, auth(t, r))
		}},
		{"unsupported-algorithm", func(*testing.T) error {
			return sigErr(ParseAuthorization("SDK-HMAC-SM3 Access=AK, SignedHeaders=x-sdk-date, Signature=" + sigEmpty))
		}},
		{"date-malformed", func(t *testing.T) error {
			r, body := signed(t, sigBody, nil)
			r.Header.Set("X-Sdk-Date", "2025-01-02T03:04:05Z")
			return verify(r, body, auth(t, r))
		}},
		{"date-out-of-window", func(t *testing.T) error {
			r, body := signed(t, sigBody, nil)
			return VerifyRequest(r, body, auth(t, r), sigSK, sigNow.Add(-16*time.Minute))
		}},
		{"date-not-signed", func(t *testing.T) error {
			r, body := signed(t, sigBody, nil)
			a := auth(t, r)
			a.SignedHeaders = slices.DeleteFunc(a.SignedHeaders, func(n string) bool { return n == "x-sdk-date" })
			return verify(r, body, a)
		}},
		{"signed-header-missing", func(t *testing.T) error {
			r, body := signed(t, sigBody, nil)
			r.Header.Del("X-Project-Id")
			return verify(r, body, auth(t, r))
		}},
		{"unsigned-payload", func(t *testing.T) error {
			r, body := signed(t, sigBody, func(r *http.Request) { r.Header.Set("Content-Type", "application/octet-stream") })
			return verify(r, body, auth(t, r))
		}},
		{"payload-hash-mismatch", func(t *testing.T) error {
			r, body := signed(t, sigBody, func(r *http.Request) { r.Header.Set("X-Sdk-Content-Sha256", sigEmpty) })
			return verify(r, body, auth(t, r))
		}},
		{"access-key-invalid", func(*testing.T) error { return SignatureFailure(ReasonAccessKeyInvalid) }},
		{"credential-expired", func(*testing.T) error { return SignatureFailure(ReasonCredentialExpired) }},
		{"signature-mismatch", func(t *testing.T) error {
			r, body := signed(t, sigBody, nil)
			return VerifyRequest(r, body, auth(t, r), "another secret", sigNow)
		}},
		{"security-token-invalid", func(t *testing.T) error {
			r, _ := signed(t, sigBody, func(r *http.Request) { r.Header.Set("X-Security-Token", "tok") })
			return CheckSecurityToken(r, false, "")
		}},
		{"replayed", func(*testing.T) error { return SignatureFailure(ReasonReplayed) }},
	}
	seen := map[string]bool{}
	for _, tt := range cases {
		t.Run(tt.reason, func(t *testing.T) {
			err := tt.err(t)
			if got := sigReason(t, err); got != tt.reason {
				t.Fatalf("reason %q, want %q (%v)", got, tt.reason, err)
			}
			if !IsFailure(err) {
				t.Error("IsFailure is false")
			}
			if want := "Incorrect authentication information: " + texts[tt.reason] + "."; kps.ErrorMessage(err) != want {
				t.Errorf("message %q\nwant    %q", kps.ErrorMessage(err), want)
			}
			if strings.Contains(err.Error(), sigSK) {
				t.Error("the error names the secret key")
			}
		})
		seen[tt.reason] = true
	}
	for reason := range texts {
		if !seen[reason] {
			t.Errorf("reason %s is not produced", reason)
		}
	}
	if len(signatureReasonText)+1 != len(texts) {
		t.Errorf("signatureReasonText has %d reasons, §11.4 %d", len(signatureReasonText)+1, len(texts))
	}
}

func TestSignatureFailurePanicsOnUnknownReasons(t *testing.T) {
	for _, reason := range []string{"no-such-reason", ReasonSignedHeaderMissing, "token-unknown"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SignatureFailure(%q) did not panic", reason)
				}
			}()
			_ = SignatureFailure(reason)
		}()
	}
}

// TestSignatureCheckOrder pins the normative order of §6.3: 1 → 2 → 3/4 → key lookup → 5–13.
func TestSignatureCheckOrder(t *testing.T) {
	r := sigExample(http.MethodPost, sigPath, sigBody, false)
	r.Header.Set("X-Sdk-Content-Sha256", sigEmpty) // wrong for this body
	if err := Sign(r, []byte(sigBody), sigAK, sigSK, sigNow); err != nil {
		t.Fatal(err)
	}
	a := sigMustParse(t, r.Header.Get("Authorization"))
	unsignedDate := a
	unsignedDate.SignedHeaders = []string{"user-agent", "x-project-id"}

	for _, tt := range []struct {
		name string
		edit func(r *http.Request)
		a    Authorization
		now  time.Time
		want string
	}{
		{"malformed date before window, signing and payload", func(r *http.Request) { r.Header.Set("X-Sdk-Date", "x") }, unsignedDate, sigNow.Add(time.Hour), ReasonDateMalformed},
		{"window before signing and payload", nil, unsignedDate, sigNow.Add(time.Hour), ReasonDateOutOfWindow},
		{"date signed before payload", nil, unsignedDate, sigNow, ReasonDateNotSigned},
		{"payload before the other steps", func(r *http.Request) { r.URL.RawQuery = "%zz"; r.Header.Del("User-Agent") }, a, sigNow, ReasonPayloadHashMismatch},
	} {
		r := r.Clone(t.Context())
		if tt.edit != nil {
			tt.edit(r)
		}
		_, err := CheckRequest(r, []byte(sigBody), tt.a, tt.now)
		if got := sigReason(t, err); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}

	// A missing signed header and an unparsable query come after the key lookup (steps 6, 7):
	// CheckRequest lets them pass and Verify reports them, whatever the key.
	for _, tt := range []struct {
		edit func(r *http.Request)
		want string
	}{
		{func(r *http.Request) { r.Header.Del("User-Agent") }, ReasonSignedHeaderMissing},
		{func(r *http.Request) { r.URL.RawQuery = "%zz" }, ReasonAuthorizationMalformed},
		{func(r *http.Request) { r.URL.RawQuery = "%zz"; r.Header.Del("User-Agent") }, ReasonAuthorizationMalformed},
	} {
		r := sigExample(http.MethodPost, sigPath, sigBody, false)
		if err := Sign(r, []byte(sigBody), sigAK, sigSK, sigNow); err != nil {
			t.Fatal(err)
		}
		tt.edit(r)
		s, err := CheckRequest(r, []byte(sigBody), sigMustParse(t, r.Header.Get("Authorization")), sigNow)
		if err != nil {
			t.Fatalf("CheckRequest: %v", err)
		}
		for _, sk := range []string{sigSK, "dummy key of an unknown AK"} {
			if got := sigReason(t, s.Verify(sk)); got != tt.want {
				t.Errorf("Verify: %q, want %q", got, tt.want)
			}
		}
	}

	// An Authorization not made by ParseAuthorization cannot smuggle in another algorithm.
	other := a
	other.Algorithm = "SDK-HMAC-SM3"
	if got := sigReason(t, sigErr(CheckRequest(r, []byte(sigBody), other, sigNow))); got != ReasonUnsupportedAlgorithm {
		t.Errorf("hand-made algorithm: %q", got)
	}
}

func TestSignatureDateFormats(t *testing.T) {
	for _, tt := range []struct {
		dates []string
		want  string
	}{
		{[]string{"20250102T030405Z"}, ""},
		{nil, ReasonDateMalformed},
		{[]string{""}, ReasonDateMalformed},
		{[]string{"20250102T030405Z", "20250102T030405Z"}, ReasonDateMalformed},
		{[]string{"20250102T030405"}, ReasonDateMalformed},
		{[]string{"20250102T030405z"}, ReasonDateMalformed},
		{[]string{"20250102T030405.000Z"}, ReasonDateMalformed},
		{[]string{"2025-01-02T03:04:05Z"}, ReasonDateMalformed},
		{[]string{"Thu, 02 Jan 2025 03:04:05 GMT"}, ReasonDateMalformed},
		{[]string{"20250102T030405+0000"}, ReasonDateMalformed},
		{[]string{" 20250102T030405Z"}, ReasonDateMalformed},
		{[]string{"20251302T030405Z"}, ReasonDateMalformed},
		{[]string{"20250230T030405Z"}, ReasonDateMalformed},
		{[]string{"20250102T240405Z"}, ReasonDateMalformed},
		{[]string{"20250102T030460Z"}, ReasonDateMalformed},
		{[]string{"2025012T0030405Z"}, ReasonDateMalformed},
		{[]string{"20250102T031905Z"}, ""},
		{[]string{"20250102T031906Z"}, ReasonDateOutOfWindow},
		{[]string{"20250102T024905Z"}, ""},
		{[]string{"20250102T024904Z"}, ReasonDateOutOfWindow},
		{[]string{"20240102T030405Z"}, ReasonDateOutOfWindow},
	} {
		r := sigExample(http.MethodGet, sigPath, "", false)
		r.Header["X-Sdk-Date"] = tt.dates
		a := Authorization{Algorithm: AlgorithmSDKHMACSHA256, AccessKey: sigAK, SignedHeaders: []string{"x-sdk-date"}, Signature: make([]byte, 32)}
		if got := sigReason(t, sigErr(CheckRequest(r, nil, a, sigNow))); got != tt.want {
			t.Errorf("X-Sdk-Date %q: %q, want %q", tt.dates, got, tt.want)
		}
	}
}

func TestSignaturePayloadHash(t *testing.T) {
	bodyHash := sigHex(sigBody)
	for _, tt := range []struct {
		name   string
		values []string
		body   string
		want   string // payload hash, or the reason with a "!" prefix
	}{
		{"absent, body", nil, sigBody, bodyHash},
		{"absent, empty body", nil, "", sigEmpty},
		{"unsigned, empty body", []string{"UNSIGNED-PAYLOAD"}, "", "UNSIGNED-PAYLOAD"},
		{"unsigned, body", []string{"UNSIGNED-PAYLOAD"}, sigBody, "!" + ReasonUnsignedPayload},
		{"unsigned in lower case", []string{"unsigned-payload"}, "", "!" + ReasonPayloadHashMismatch},
		{"right hash", []string{bodyHash}, sigBody, bodyHash},
		{"right hash in upper case, kept as sent", []string{strings.ToUpper(bodyHash)}, sigBody, strings.ToUpper(bodyHash)},
		{"hash of the empty body", []string{sigEmpty}, "", sigEmpty},
		{"wrong hash", []string{sigEmpty}, sigBody, "!" + ReasonPayloadHashMismatch},
		{"empty value", []string{""}, "", "!" + ReasonPayloadHashMismatch},
		{"two values", []string{bodyHash, bodyHash}, sigBody, "!" + ReasonPayloadHashMismatch},
	} {
		r := sigExample(http.MethodPost, sigPath, tt.body, true)
		if tt.values != nil {
			r.Header["X-Sdk-Content-Sha256"] = tt.values
		}
		a := Authorization{Algorithm: AlgorithmSDKHMACSHA256, AccessKey: sigAK, SignedHeaders: []string{"x-sdk-date"}, Signature: make([]byte, 32)}
		s, err := CheckRequest(r, []byte(tt.body), a, sigNow)
		got := ""
		if err != nil {
			got = "!" + sigReason(t, err)
		} else {
			got = s.payloadHash
		}
		if got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestCanonicalQuery(t *testing.T) {
	for _, tt := range []struct{ raw, want string }{
		{"", ""},
		{"&", ""},
		{"&&limit=10&", "limit=10"},
		{"limit=10", "limit=10"},
		{"b=2&a=1", "a=1&b=2"},
		{"tag=b&tag=a&tag=A", "tag=A&tag=a&tag=b"},
		{"a=2&b=1&a=1", "a=1&a=2&b=1"},
		{"empty", "empty="},
		{"empty=", "empty="},
		{"e&e=&e=x", "e=&e=&e=x"},
		{"=", "="},
		{"=v", "=v"},
		{"Zeta=z&empty&alpha=1&Beta=2", "Beta=2&Zeta=z&alpha=1&empty="},
		{"marker=a%20b", "marker=a%20b"},
		{"marker=a+b", "marker=a%20b"},
		{"marker=a%2Bb", "marker=a%2Bb"},
		{"marker=a%2bb", "marker=a%2Bb"},
		{"marker=%C3%BC", "marker=%C3%BC"},
		{"marker=%c3%bc", "marker=%C3%BC"},
		{"marker=\xc3\xbc", "marker=%C3%BC"},
		{"marker=ü&m=日本", "m=%E6%97%A5%E6%9C%AC&marker=%C3%BC"},
		{"q=%21%2A%27%28%29%3A%40%24%2C%3F%23%5B%5D%3D%26%2F%25", "q=%21%2A%27%28%29%3A%40%24%2C%3F%23%5B%5D%3D%26%2F%25"},
		{"q=!*'():@$,?/[]", "q=%21%2A%27%28%29%3A%40%24%2C%3F%2F%5B%5D"},
		{"q=a=b=c", "q=a%3Db%3Dc"},
		{"q=-_.~AZaz09", "q=-_.~AZaz09"},
		{"%7E=%2D", "~=-"},
		{"na%20me=v", "na%20me=v"},
		{"k=%00%FF", "k=%00%FF"},
		// Sorting happens on decoded bytes: "a b" (0x20) < "a+b" (0x2B) < "a-b" (0x2D).
		{"k=a-b&k=a%2Bb&k=a+b", "k=a%20b&k=a%2Bb&k=a-b"},
		{"a%2Bb=1&a+b=2&a-b=3", "a%20b=2&a%2Bb=1&a-b=3"},
	} {
		got, err := canonicalQuery(tt.raw)
		if err != nil || got != tt.want {
			t.Errorf("canonicalQuery(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
	for _, raw := range []string{"a=1;b=2", "a;b", "%zz", "a=%", "a=%4", "%=1"} {
		if _, err := canonicalQuery(raw); sigReason(t, err) != ReasonAuthorizationMalformed {
			t.Errorf("canonicalQuery(%q): %v", raw, err)
		}
	}
}

func TestCanonicalURI(t *testing.T) {
	for _, tt := range []struct{ path, want string }{
		{"", "/"},
		{"/", "/"},
		{"//", "//"},
		{sigPath, sigPath + "/"},
		{sigPath + "/", sigPath + "/"},
		{"/a//b", "/a//b/"},
		{"a", "a/"},
		{"/v3/p/keypairs/a+b", "/v3/p/keypairs/a%2Bb/"},
		{"/v3/p/keypairs/a b", "/v3/p/keypairs/a%20b/"},
		{"/v3/p/keypairs/ü", "/v3/p/keypairs/%C3%BC/"},
		{"/v3/p/keypairs/-_.~", "/v3/p/keypairs/-_.~/"},
		{"/v3/p/keypairs/100%", "/v3/p/keypairs/100%25/"},
		{"/x/!*'();:@&=$,?#[]", "/x/%21%2A%27%28%29%3B%3A%40%26%3D%24%2C%3F%23%5B%5D/"},
	} {
		if got := canonicalURI(tt.path); got != tt.want {
			t.Errorf("canonicalURI(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}

	// The server canonicalises the decoded path: an encoded slash is a separator, lower-case
	// escapes come out upper case, a literal "+" stays a plus.
	for target, want := range map[string]string{
		"/v3/p/keypairs/a%2Fb":    "/v3/p/keypairs/a/b/",
		"/v3/p/keypairs/%c3%bc":   "/v3/p/keypairs/%C3%BC/",
		"/v3/p/keypairs/a+b%2B":   "/v3/p/keypairs/a%2Bb%2B/",
		"/v3/p/keypairs/a%20b":    "/v3/p/keypairs/a%20b/",
		"/v3/p/keypairs/%7Ex":     "/v3/p/keypairs/~x/",
		"/v3/p//keypairs/":        "/v3/p//keypairs/",
		"/v3/p/keypairs?x=1":      "/v3/p/keypairs/",
		"/v3/p/keypairs/%25%2541": "/v3/p/keypairs/%25%2541/",
	} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		if got := canonicalURI(r.URL.Path); got != want {
			t.Errorf("%s: %q, want %q", target, got, want)
		}
	}
}

func TestCanonicalHeaders(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://kps.example.com:8443/", nil)
	r.Header["X-Multi"] = []string{"b", "  a  ", "c,d"}
	r.Header["x-lower"] = []string{"non-canonical key"} // as a client-side map may hold it
	r.Header["X-Inner"] = []string{"  two  spaces  inside "}
	r.Header["X-Sort-Before-Trim"] = []string{"b", " c"}
	r.Header["X-Empty"] = []string{""}
	for _, tt := range []struct {
		signed []string
		want   string
	}{
		{[]string{"x-multi"}, "x-multi:a\nx-multi:b\nx-multi:c,d\n"},
		{[]string{"x-lower"}, "x-lower:non-canonical key\n"},
		{[]string{"x-inner"}, "x-inner:two  spaces  inside\n"},
		{[]string{"x-sort-before-trim"}, "x-sort-before-trim:c\nx-sort-before-trim:b\n"},
		{[]string{"x-empty"}, "x-empty:\n"},
		{[]string{"host"}, "host:kps.example.com:8443\n"},
		{[]string{"x-lower", "host", "x-empty"}, "x-lower:non-canonical key\nhost:kps.example.com:8443\nx-empty:\n"},
	} {
		got, err := canonicalHeaders(r, lowerHeaders(r.Header), tt.signed)
		if err != nil || got != tt.want {
			t.Errorf("%v: %q, %v; want %q", tt.signed, got, err, tt.want)
		}
	}
	if _, err := canonicalHeaders(r, lowerHeaders(r.Header), []string{"x-multi", "x-absent"}); kps.ErrorMessage(err) !=
		"Incorrect authentication information: signed header x-absent is not present." {
		t.Errorf("absent header: %v", err)
	}

	// Client side: an empty r.Host means the URL's host; server side, an empty Host is missing.
	c, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:9999/v3", nil)
	if got, err := canonicalHeaders(c, nil, []string{"host"}); err != nil || got != "host:127.0.0.1:9999\n" {
		t.Errorf("client host: %q, %v", got, err)
	}
	r.Host = ""
	r.URL.Host = ""
	if _, err := canonicalHeaders(r, nil, []string{"host"}); sigReason(t, err) != ReasonSignedHeaderMissing {
		t.Errorf("no host: %v", err)
	}
}

// sigServer answers 204 to a request that verifies with sigSK at sigNow, else 401 with the
// reason key as body. It checks the security token when X-Test-Token-Hash names one.
func sigServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		a, err := ParseAuthorization(r.Header.Get("Authorization"))
		if err == nil {
			err = VerifyRequest(r, body, a, sigSK, sigNow)
		}
		if h := r.Header.Get("X-Test-Token-Hash"); err == nil && h != "" {
			err = CheckSecurityToken(r, true, h)
		}
		var f *Failure
		switch {
		case err == nil:
			w.WriteHeader(http.StatusNoContent)
		case errors.As(err, &f):
			http.Error(w, f.Reason, http.StatusUnauthorized)
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// sigSend sends r (whose body is body) to the test server and returns "" on success or the
// reason the server gave.
func sigSend(t *testing.T, srv *httptest.Server, r *http.Request) string {
	t.Helper()
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNoContent {
		return ""
	}
	return strings.TrimSpace(string(msg))
}

// TestSignRoundTripHTTP signs requests with Sign and verifies them in a real HTTP server: what
// the client signs is what the server sees.
func TestSignRoundTripHTTP(t *testing.T) {
	srv := sigServer(t)
	json := []byte(sigBody)
	for _, tt := range []struct {
		name, method, target string
		body                 []byte
		header               http.Header
	}{
		{"list, SDK wire form of space, plus, slash, non-ASCII", "GET", sigPath + "?limit=10&marker=a%20b%2Bc%2F%C3%BC", nil, nil},
		{"list, form encoding", "GET", sigPath + "?limit=10&marker=a+b%2Bc%2F%C3%BC", nil, nil},
		{"lower-case escapes", "GET", sigPath + "?marker=%c3%bc%2b", nil, nil},
		{"raw UTF-8 in the query", "GET", sigPath + "?marker=\xc3\xbc\xe6\x97\xa5", nil, nil},
		{"repeated keys", "GET", sigPath + "?tag=b&tag=a&tag=A&tag=a", nil, nil},
		{"empty values", "GET", sigPath + "?empty&e2=&e3&e3=x", nil, nil},
		{"reserved characters", "GET", sigPath + "?q=%21%2A%27%28%29%3A%40%24%2C%3F%23%5B%5D%3D%26%2F%25&r=!*'():@$,?/", nil, nil},
		{"7.2 query", "GET", sigPath + "?Zeta=z&empty&limit=10&marker=my%20key%2B1%2F%C3%BC&tag=b&tag=a&tag=A", nil, nil},
		{"create", "POST", sigPath, json, nil},
		{"create, trailing slash", "POST", sigPath + "/", json, nil},
		{"create, preset payload hash", "POST", sigPath, json, http.Header{"X-Sdk-Content-Sha256": {sigHex(sigBody)}}},
		{"create, no trailing newline", "POST", sigPath, []byte(`{"keypair":{"name":"demo-key"}}`), nil},
		{"update with unicode body", "PUT", sigPath + "/demo-key", []byte(`{"keypair":{"description":"schlüssel 鍵"}}`), nil},
		{"delete", "DELETE", sigPath + "/demo-key", nil, nil},
		{"path with space, plus, non-ASCII", "GET", sigPath + "/a%20b+c%C3%BC", nil, nil},
		{"path with an encoded slash", "GET", sigPath + "/a%2Fb", nil, nil},
		{"root", "GET", "/", nil, nil},
		{"empty segments", "GET", "/v3//x", nil, nil},
		{"security token, signed as the Go SDK does", "GET", sigPath, nil, http.Header{"X-Security-Token": {"temporary-token"}, "X-Test-Token-Hash": {sigHex("temporary-token")}}},
		{"repeated and padded extra headers", "GET", sigPath, nil, http.Header{"X-Extra": {"b", " a ", "x,y"}}},
		{"underscore header (unsigned)", "GET", sigPath, nil, http.Header{"X_custom": {"v"}}},
		{"unsigned payload with an empty body", "GET", sigPath, nil, http.Header{"Content-Type": {"application/octet-stream"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.NewRequest(tt.method, srv.URL+tt.target, bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("User-Agent", sigUA+"; os/linux")
			r.Header.Set("X-Project-Id", sigProject)
			for k, v := range tt.header {
				r.Header[k] = v
			}
			if err := Sign(r, tt.body, sigAK, sigSK, sigNow); err != nil {
				t.Fatal(err)
			}
			if got := sigSend(t, srv, r); got != "" {
				t.Errorf("refused: %s (%s)", got, r.Header.Get("Authorization"))
			}
		})
	}
}

// TestSignTrailingSlash: a path and the same path with a trailing slash share the canonical
// URI, so either signature verifies for either path (routing decides about the slash).
func TestSignTrailingSlash(t *testing.T) {
	for _, pair := range [][2]string{{sigPath, sigPath + "/"}, {sigPath + "/", sigPath}, {"", "/"}} {
		r := sigExample(http.MethodGet, sigPath, "", false)
		r.URL.Path = pair[0]
		if err := Sign(r, nil, sigAK, sigSK, sigNow); err != nil {
			t.Fatal(err)
		}
		r.URL.Path = pair[1]
		if got := sigVerify(t, r, ""); got != "" {
			t.Errorf("signed %q, verified %q: %s", pair[0], pair[1], got)
		}
	}
}

// TestSignTampering changes one thing of a signed request at a time.
func TestSignTampering(t *testing.T) {
	orig := sigExample(http.MethodPost, sigPath+"?limit=10&marker=a%20b&tag=x&tag=y", sigBody, false)
	orig.Header.Set("X-Custom", "v1")
	orig.Header["X-Repeated"] = []string{"one", "two"}
	orig.Header.Set("Accept", "application/json")
	if err := Sign(orig, []byte(sigBody), sigAK, sigSK, sigNow); err != nil {
		t.Fatal(err)
	}
	a := sigMustParse(t, orig.Header.Get("Authorization"))
	if want := []string{"accept", "user-agent", "x-custom", "x-project-id", "x-repeated", "x-sdk-date"}; !slices.Equal(a.SignedHeaders, want) {
		t.Fatalf("signed headers %v, want %v", a.SignedHeaders, want)
	}
	if got := sigVerify(t, orig, sigBody); got != "" {
		t.Fatalf("untouched request: %s", got)
	}

	type edit struct {
		name string
		fn   func(r *http.Request, body *string)
		want string
	}
	edits := []edit{
		{"method", func(r *http.Request, _ *string) { r.Method = http.MethodPut }, ReasonSignatureMismatch},
		{"method case", func(r *http.Request, _ *string) { r.Method = "post" }, ReasonSignatureMismatch},
		{"path", func(r *http.Request, _ *string) { r.URL.Path = "/v3/fedcba9876543210fedcba9876543210/keypairs" }, ReasonSignatureMismatch},
		{"path segment added", func(r *http.Request, _ *string) { r.URL.Path += "/x" }, ReasonSignatureMismatch},
		{"path with a trailing slash", func(r *http.Request, _ *string) { r.URL.Path += "/" }, ""},
		{"query value", func(r *http.Request, _ *string) { r.URL.RawQuery = "limit=11&marker=a%20b&tag=x&tag=y" }, ReasonSignatureMismatch},
		{"query parameter added", func(r *http.Request, _ *string) { r.URL.RawQuery += "&offset=1" }, ReasonSignatureMismatch},
		{"query parameter dropped", func(r *http.Request, _ *string) { r.URL.RawQuery = "limit=10&marker=a%20b&tag=x" }, ReasonSignatureMismatch},
		{"query value moved between names", func(r *http.Request, _ *string) { r.URL.RawQuery = "limit=10&marker=a%20b&tag=x&tag=y&tag=" }, ReasonSignatureMismatch},
		{"plus for %2B", func(r *http.Request, _ *string) { r.URL.RawQuery = "limit=10&marker=a%2Bb&tag=x&tag=y" }, ReasonSignatureMismatch},
		{"query reordered", func(r *http.Request, _ *string) { r.URL.RawQuery = "tag=y&marker=a%20b&tag=x&limit=10" }, ""},
		{"query spelled with + for space", func(r *http.Request, _ *string) { r.URL.RawQuery = "limit=10&marker=a+b&tag=x&tag=y" }, ""},
		{"date one second later", func(r *http.Request, _ *string) { r.Header.Set("X-Sdk-Date", "20250102T030406Z") }, ReasonSignatureMismatch},
		{"date malformed", func(r *http.Request, _ *string) { r.Header.Set("X-Sdk-Date", "20250102T030406") }, ReasonDateMalformed},
		{"date out of window", func(r *http.Request, _ *string) { r.Header.Set("X-Sdk-Date", "20250102T032006Z") }, ReasonDateOutOfWindow},
		{"body", func(_ *http.Request, body *string) { *body = strings.Replace(*body, "demo", "evil", 1) }, ReasonSignatureMismatch},
		{"body emptied", func(_ *http.Request, body *string) { *body = "" }, ReasonSignatureMismatch},
		{"body newline dropped", func(_ *http.Request, body *string) { *body = strings.TrimSpace(*body) }, ReasonSignatureMismatch},
		{"body with the old payload hash", func(r *http.Request, body *string) {
			r.Header.Set("X-Sdk-Content-Sha256", sigHex(*body))
			*body = strings.Replace(*body, "demo", "evil", 1)
		}, ReasonPayloadHashMismatch},
		{"body swapped under UNSIGNED-PAYLOAD", func(r *http.Request, body *string) { r.Header.Set("X-Sdk-Content-Sha256", UnsignedPayload) }, ReasonUnsignedPayload},
		{"unsigned header added", func(r *http.Request, _ *string) { r.Header.Set("X-Other", "x") }, ""},
		{"unsigned Content-Type changed", func(r *http.Request, _ *string) { r.Header.Set("Content-Type", "text/plain") }, ""},
		{"unsigned Host changed", func(r *http.Request, _ *string) { r.Host = "evil.example.com" }, ""},
		{"signed header padded", func(r *http.Request, _ *string) { r.Header.Set("X-Custom", "  v1\t") }, ""},
		{"signed header inner space", func(r *http.Request, _ *string) { r.Header.Set("X-Custom", "v 1") }, ReasonSignatureMismatch},
		{"signed header repeated", func(r *http.Request, _ *string) { r.Header.Add("X-Custom", "v2") }, ReasonSignatureMismatch},
		{"repeated values reordered", func(r *http.Request, _ *string) { r.Header["X-Repeated"] = []string{"two", "one"} }, ""},
		{"repeated values joined", func(r *http.Request, _ *string) { r.Header["X-Repeated"] = []string{"one,two"} }, ReasonSignatureMismatch},
		{"signature", func(r *http.Request, _ *string) {
			b := slices.Clone(a.Signature)
			b[31] ^= 1
			r.Header.Set("Authorization", Authorization{Algorithm: a.Algorithm, AccessKey: a.AccessKey, SignedHeaders: a.SignedHeaders, Signature: b}.Header())
		}, ReasonSignatureMismatch},
		{"signed headers reordered", func(r *http.Request, _ *string) {
			h := slices.Clone(a.SignedHeaders)
			slices.Reverse(h)
			r.Header.Set("Authorization", Authorization{Algorithm: a.Algorithm, AccessKey: a.AccessKey, SignedHeaders: h, Signature: a.Signature}.Header())
		}, ReasonSignatureMismatch},
		{"signed header dropped from the list", func(r *http.Request, _ *string) {
			h := slices.DeleteFunc(slices.Clone(a.SignedHeaders), func(n string) bool { return n == "x-custom" })
			r.Header.Set("Authorization", Authorization{Algorithm: a.Algorithm, AccessKey: a.AccessKey, SignedHeaders: h, Signature: a.Signature}.Header())
		}, ReasonSignatureMismatch},
		{"unsigned header added to the list", func(r *http.Request, _ *string) {
			h := append(slices.Clone(a.SignedHeaders), "content-type")
			r.Header.Set("Authorization", Authorization{Algorithm: a.Algorithm, AccessKey: a.AccessKey, SignedHeaders: h, Signature: a.Signature}.Header())
		}, ReasonSignatureMismatch},
	}
	for _, n := range a.SignedHeaders {
		if n == "x-sdk-date" {
			continue
		}
		edits = append(edits,
			edit{"signed " + n + " changed", func(r *http.Request, _ *string) {
				r.Header.Set(n, r.Header.Get(n)+"x")
			}, ReasonSignatureMismatch},
			edit{"signed " + n + " removed", func(r *http.Request, _ *string) { r.Header.Del(n) }, ReasonSignedHeaderMissing})
	}
	for _, e := range edits {
		r := orig.Clone(t.Context())
		body := sigBody
		e.fn(r, &body)
		if got := sigVerify(t, r, body); got != e.want {
			t.Errorf("%s: %q, want %q", e.name, got, e.want)
		}
	}
	if got := sigReason(t, VerifyRequest(orig, []byte(sigBody), a, sigSK[:len(sigSK)-1], sigNow)); got != ReasonSignatureMismatch {
		t.Errorf("wrong secret key: %q", got)
	}
}

// TestSignatureTerraformStyle is the Terraform provider's way (auth.md §6.1, §7.4): it signs
// every header present when it signs (accept, content-type, user-agent, x-sdk-date), puts the
// canonical query on the wire, and adds X-Project-Id and X-Security-Token after signing.
func TestSignatureTerraformStyle(t *testing.T) {
	srv := sigServer(t)
	body := `{"keypair":{"name":"tf-key","type":"ssh"}}`
	signed := []string{"accept", "content-type", "user-agent", "x-sdk-date"}
	for _, tt := range []struct {
		method, target, body, query string
	}{
		{"POST", sigPath, body, ""},
		{"GET", sigPath, "", "limit=10&marker=tf%20key%2B1"},
	} {
		target := srv.URL + tt.target
		if tt.query != "" {
			target += "?" + tt.query
		}
		r, _ := http.NewRequest(tt.method, target, strings.NewReader(tt.body))
		r.Header.Set("Accept", "application/json")
		r.Header.Set("Content-Type", "application/json;charset=utf8")
		r.Header.Set("User-Agent", "terraform-provider-huaweicloud")
		r.Header.Set("X-Sdk-Date", sigDate)
		if err := signWith(r, []byte(tt.body), Authorization{Algorithm: AlgorithmSDKHMACSHA256, AccessKey: sigAK, SignedHeaders: signed}, sigSK); err != nil {
			t.Fatal(err)
		}

		// The same signature, computed by hand from the recipe.
		cr := tt.method + "\n" + sigPath + "/\n" + tt.query + "\n" +
			"accept:application/json\ncontent-type:application/json;charset=utf8\nuser-agent:terraform-provider-huaweicloud\nx-sdk-date:" + sigDate + "\n\n" +
			"accept;content-type;user-agent;x-sdk-date\n" + sigHex(tt.body)
		want := "SDK-HMAC-SHA256 Access=" + sigAK + ", SignedHeaders=accept;content-type;user-agent;x-sdk-date, Signature=" +
			sigHMAC(sigSK, "SDK-HMAC-SHA256\n"+sigDate+"\n"+sigHex(cr))
		if got := r.Header.Get("Authorization"); got != want {
			t.Errorf("%s: signature\n%s\nwant\n%s", tt.method, got, want)
		}

		r.Header.Set("X-Project-Id", sigProject)
		r.Header.Set("X-Security-Token", "tf-token")
		r.Header.Set("X-Test-Token-Hash", sigHex("tf-token"))
		if got := sigSend(t, srv, r); got != "" {
			t.Errorf("%s: refused: %s", tt.method, got)
		}
	}
}

// TestSignatureSDKPythonStyle is the Python SDK's way (auth.md §6.1, §7.4): it signs
// content-type and a host header of its own with the port, and sends the canonical query.
func TestSignatureSDKPythonStyle(t *testing.T) {
	srv := sigServer(t)
	host := srv.Listener.Addr().String() // 127.0.0.1:<port>, never a default port
	query := "limit=10&marker=my%20key"
	r, _ := http.NewRequest(http.MethodGet, srv.URL+sigPath+"?"+query, nil)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Project-Id", sigProject)
	r.Header.Set("X-Sdk-Date", sigDate)
	signed := []string{"content-type", "host", "x-project-id", "x-sdk-date"}
	if err := signWith(r, nil, Authorization{Algorithm: AlgorithmSDKHMACSHA256, AccessKey: sigAK, SignedHeaders: signed}, sigSK); err != nil {
		t.Fatal(err)
	}
	cr := "GET\n" + sigPath + "/\n" + query + "\n" +
		"content-type:application/json\nhost:" + host + "\nx-project-id:" + sigProject + "\nx-sdk-date:" + sigDate + "\n\n" +
		"content-type;host;x-project-id;x-sdk-date\n" + sigEmpty
	want := "SDK-HMAC-SHA256 Access=" + sigAK + ", SignedHeaders=content-type;host;x-project-id;x-sdk-date, Signature=" +
		sigHMAC(sigSK, "SDK-HMAC-SHA256\n"+sigDate+"\n"+sigHex(cr))
	if got := r.Header.Get("Authorization"); got != want {
		t.Errorf("signature\n%s\nwant\n%s", got, want)
	}
	if got := sigSend(t, srv, r); got != "" {
		t.Errorf("refused: %s", got)
	}

	// A proxy that drops the port ($host instead of $http_host) breaks the signature.
	s := httptest.NewRequest(http.MethodGet, sigPath+"?"+query, nil)
	s.Header = r.Header.Clone()
	s.Host = "127.0.0.1"
	if got := sigVerify(t, s, ""); got != ReasonSignatureMismatch {
		t.Errorf("host without port: %q", got)
	}
	s.Host = host
	if got := sigVerify(t, s, ""); got != "" {
		t.Errorf("host with port, in process: %q", got)
	}
}

func TestSignSDKHeaderSelection(t *testing.T) {
	r, _ := http.NewRequest(http.MethodPost, "http://kps.example.com"+sigPath, nil)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Content-Type-Options", "x")
	r.Header["X_underscore"] = []string{"v"}
	r.Header.Set("Host", "ignored.example.com")
	r.Header.Set("Authorization", "SDK-HMAC-SHA256 stale")
	r.Header["x-sdk-date"] = []string{"19990101T000000Z"} // stale, non-canonical key
	r.Header["x-lower"] = []string{"v"}
	r.Header.Set("User-Agent", sigUA)
	if err := Sign(r, []byte(sigBody), sigAK, sigSK, sigNow.In(time.FixedZone("UTC+8", 8*3600))); err != nil {
		t.Fatal(err)
	}
	a := sigMustParse(t, r.Header.Get("Authorization"))
	if want := []string{"user-agent", "x-lower", "x-sdk-date"}; !slices.Equal(a.SignedHeaders, want) {
		t.Errorf("signed %v, want %v", a.SignedHeaders, want)
	}
	if got := lowerHeaders(r.Header)["x-sdk-date"]; !slices.Equal(got, []string{sigDate}) {
		t.Errorf("X-Sdk-Date %v", got)
	}
	if len(r.Header.Values("Authorization")) != 1 || r.Header.Get(HeaderContentSHA256) != "" {
		t.Errorf("headers %v", r.Header)
	}
	if err := VerifyRequest(r, []byte(sigBody), a, sigSK, sigNow); err != nil {
		t.Errorf("VerifyRequest: %v", err)
	}
	var nilHeader http.Request
	nilHeader.URL = &url.URL{Path: "/"}
	if err := Sign(&nilHeader, nil, sigAK, sigSK, sigNow); err != nil || nilHeader.Header.Get("Authorization") == "" {
		t.Errorf("nil header: %v", err)
	}
	bad := sigExample(http.MethodGet, sigPath, "", false)
	bad.URL.RawQuery = "a;b"
	if err := Sign(bad, nil, sigAK, sigSK, sigNow); err == nil {
		t.Error("Sign accepted a query it cannot canonicalise")
	}
}

// TestSignUnsignedPayload: the Go SDK marks non-JSON bodies UNSIGNED-PAYLOAD and signs that
// header (§6.5); the server accepts that only without a body.
func TestSignUnsignedPayload(t *testing.T) {
	for _, tt := range []struct {
		contentType, body string
		unsigned          bool
		want              string
	}{
		{"application/json", sigBody, false, ""},
		{"application/json;charset=UTF-8", sigBody, false, ""},
		{"application/bson", sigBody, false, ""},
		{"", sigBody, false, ""},
		{"application/octet-stream", sigBody, true, ReasonUnsignedPayload},
		{"multipart/form-data; boundary=x", sigBody, true, ReasonUnsignedPayload},
		{"application/x-www-form-urlencoded", "a=b", true, ReasonUnsignedPayload},
		{"application/octet-stream", "", true, ""},
	} {
		r := sigExample(http.MethodPost, sigPath, tt.body, false)
		r.Header.Del("Content-Type")
		if tt.contentType != "" {
			r.Header.Set("Content-Type", tt.contentType)
		}
		if err := Sign(r, []byte(tt.body), sigAK, sigSK, sigNow); err != nil {
			t.Fatal(err)
		}
		a := sigMustParse(t, r.Header.Get("Authorization"))
		if got := r.Header.Get(HeaderContentSHA256) == UnsignedPayload; got != tt.unsigned || slices.Contains(a.SignedHeaders, "x-sdk-content-sha256") != tt.unsigned {
			t.Errorf("%q: unsigned %v, signed %v", tt.contentType, got, a.SignedHeaders)
		}
		if got := sigVerify(t, r, tt.body); got != tt.want {
			t.Errorf("%q with %d bytes: %q, want %q", tt.contentType, len(tt.body), got, tt.want)
		}
	}
}

func TestSignatureSecurityToken(t *testing.T) {
	hash := sigHex("the-token")
	for _, tt := range []struct {
		name      string
		tokens    []string
		temporary bool
		hash      string
		ok        bool
	}{
		{"permanent without token", nil, false, "", true},
		{"permanent with token", []string{"the-token"}, false, "", false},
		{"permanent with empty token", []string{""}, false, "", false},
		{"temporary with token", []string{"the-token"}, true, hash, true},
		{"temporary without token", nil, true, hash, false},
		{"temporary with another token", []string{"other"}, true, hash, false},
		{"temporary with two tokens", []string{"the-token", "the-token"}, true, hash, false},
		{"temporary with upper-case stored hash", []string{"the-token"}, true, strings.ToUpper(hash), false},
		{"temporary with empty stored hash", []string{""}, true, "", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if tt.tokens != nil {
			r.Header["X-Security-Token"] = tt.tokens
		}
		err := CheckSecurityToken(r, tt.temporary, tt.hash)
		if (err == nil) != tt.ok || (err != nil && sigReason(t, err) != ReasonSecurityTokenInvalid) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}

	// The Go SDK signs the token (§6.8); a swapped token is then a signature mismatch as well.
	r := sigExample(http.MethodGet, sigPath, "", false)
	r.Header.Set("X-Security-Token", "the-token")
	if err := Sign(r, nil, sigAK, sigSK, sigNow); err != nil {
		t.Fatal(err)
	}
	a := sigMustParse(t, r.Header.Get("Authorization"))
	if want := "user-agent;x-project-id;x-sdk-date;x-security-token"; strings.Join(a.SignedHeaders, ";") != want {
		t.Errorf("signed %v", a.SignedHeaders)
	}
	if got := sigVerify(t, r, ""); got != "" {
		t.Errorf("with token: %q", got)
	}
	r.Header.Set("X-Security-Token", "another")
	if got := sigVerify(t, r, ""); got != ReasonSignatureMismatch {
		t.Errorf("swapped token: %q", got)
	}
}

func TestAuthorizationStringOmitsSignature(t *testing.T) {
	const sig = "4729efee572da2a654ceea77c551843ae380e9fcadc9a049372daf1f5a2dad06"
	a := sigMustParse(t, "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=user-agent;x-sdk-date, Signature="+sig)
	want := "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=user-agent;x-sdk-date"
	for _, got := range []string{a.String(), fmt.Sprint(a), fmt.Sprintf("%v", a), fmt.Sprintf("%#v", a), fmt.Sprintf("%+v", a)} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
	if a.Header() != "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=user-agent;x-sdk-date, Signature="+sig {
		t.Errorf("Header() = %q", a.Header())
	}
}

// FuzzParseAuthorization: the parser never panics, refuses only with its two reasons, and
// whatever it accepts satisfies §6.2 and survives a round trip through Header.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("SDK-HMAC-SHA256 Access=KPSEXAMPLEAK00000001, SignedHeaders=user-agent;x-project-id;x-sdk-date, Signature=4729efee572da2a654ceea77c551843ae380e9fcadc9a049372daf1f5a2dad06")
	f.Add("V11-HMAC-SHA256 Credential=KPSEXAMPLEAK00000001/20250102/my-region-1/kps, SignedHeaders=user-agent;x-project-id;x-sdk-date, Signature=d24457caac39984a833ead047e44ee02e8ac3e927b41689daeffc943b942c63b")
	configs := []SignatureConfig{{}, {V11Region: "my-region-1"}}
	f.Fuzz(func(t *testing.T, h string) {
		for _, c := range configs {
			a, err := c.ParseAuthorization(h)
			if err != nil {
				var fl *Failure
				if !errors.As(err, &fl) || (fl.Reason != ReasonAuthorizationMalformed && fl.Reason != ReasonUnsupportedAlgorithm) ||
					kps.ErrorCode(err) != kps.ErrBadCredentials {
					t.Fatalf("%q: %v", h, err)
				}
				continue
			}
			if len(h) > MaxAuthorizationBytes || !IsSignatureScheme(h) || len(a.Signature) != sha256.Size ||
				len(a.SignedHeaders) == 0 || len(a.SignedHeaders) > MaxSignedHeaders || !validAccessKey(a.AccessKey) {
				t.Fatalf("%q accepted as %#v", h, a)
			}
			if (a.Algorithm == AlgorithmV11HMACSHA256) != (a.Scope != "") || (a.Algorithm != AlgorithmSDKHMACSHA256 && c.V11Region == "") {
				t.Fatalf("%q: algorithm %s, scope %q", h, a.Algorithm, a.Scope)
			}
			for i, n := range a.SignedHeaders {
				if n == "" || n != strings.ToLower(n) || slices.Contains(a.SignedHeaders[:i], n) {
					t.Fatalf("%q: signed headers %q", h, a.SignedHeaders)
				}
			}
			// The SDK form adds ", " separators, which may push a maximal header over 8 KiB.
			if again := a.Header(); len(again) <= MaxAuthorizationBytes {
				b, err := c.ParseAuthorization(again)
				if err != nil || !reflect.DeepEqual(a, b) {
					t.Fatalf("%q → %q → %#v, %v", h, again, b, err)
				}
			}
		}
	})
}

// FuzzCanonicalRequest: the canonical forms are well formed and stable, and whatever Sign signs,
// VerifyRequest accepts — and refuses once the body changes.
func FuzzCanonicalRequest(f *testing.F) {
	f.Add("POST", sigPath, "", "huaweicloud-usdk-go/3.0", []byte(sigBody))
	f.Add("GET", sigPath+"/", "Zeta=z&empty&limit=10&marker=my%20key%2B1%2F%C3%BC&tag=b&tag=a&tag=A", " padded ", []byte(nil))
	f.Add("GET", "/a//b/ü+ /%", "a=1;b=2", "", []byte(nil))
	f.Add("DELETE", "", "k=a+b&k=a%2bb&k=%zz", "x\ty", []byte{0})
	f.Add("", "/", "&&=&=v&%00=%FF", "\xff", []byte("x"))
	f.Fuzz(func(t *testing.T, method, path, rawQuery, ua string, body []byte) {
		cu := canonicalURI(path)
		if !strings.HasSuffix(cu, "/") || strings.TrimRight(cu, "-_.~/%0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != "" {
			t.Fatalf("canonicalURI(%q) = %q", path, cu)
		}
		if p, err := url.PathUnescape(cu); err != nil || (p != path && p != path+"/") {
			t.Fatalf("canonicalURI(%q) = %q decodes to %q, %v", path, cu, p, err)
		}

		cq, qerr := canonicalQuery(rawQuery)
		if qerr == nil {
			again, err := canonicalQuery(cq)
			if err != nil || again != cq {
				t.Fatalf("canonicalQuery(%q) = %q, then %q, %v", rawQuery, cq, again, err)
			}
			want, _ := url.ParseQuery(rawQuery)
			got, _ := url.ParseQuery(cq)
			for k := range want {
				slices.Sort(want[k])
			}
			if len(want) == 0 {
				want = nil
			}
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("canonicalQuery(%q) = %q: %v, want %v", rawQuery, cq, got, want)
			}
		} else if sigReason(t, qerr) != ReasonAuthorizationMalformed {
			t.Fatalf("canonicalQuery(%q): %v", rawQuery, qerr)
		}

		r := &http.Request{
			Method: method,
			URL:    &url.URL{Path: path, RawQuery: rawQuery},
			Host:   "kps.example.com",
			Header: http.Header{"User-Agent": {ua}, "X-Project-Id": {sigProject}},
		}
		err := Sign(r, body, sigAK, sigSK, sigNow)
		if (err != nil) != (qerr != nil) {
			t.Fatalf("Sign: %v; canonicalQuery: %v", err, qerr)
		}
		if err != nil {
			return
		}
		a, err := ParseAuthorization(r.Header.Get("Authorization"))
		if err != nil {
			t.Fatalf("Sign made %q: %v", r.Header.Get("Authorization"), err)
		}
		if err := VerifyRequest(r, body, a, sigSK, sigNow); err != nil {
			t.Fatalf("VerifyRequest of a signed request: %v", err)
		}
		if got := sigReason(t, VerifyRequest(r, append(slices.Clone(body), 'x'), a, sigSK, sigNow)); got != ReasonSignatureMismatch {
			t.Fatalf("changed body: %q", got)
		}
	})
}
