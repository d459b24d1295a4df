package iam

import (
	"cmp"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/openkps/kps"
)

// AK/SK request signatures (auth.md §6). A caller verifies a request in the normative order of
// §6.3 — cheap syntactic checks first, the store next, the HMAC last:
//
//	a, err := iam.ParseAuthorization(r.Header.Get("Authorization")) // step 1
//	// lockout state of (a.AccessKey, client IP), §4.2 step 6
//	sr, err := iam.CheckRequest(r, body, a, now)                    // steps 2–4, no secret needed
//	// look the AK up (step 11); unknown → iam.SignatureFailure(iam.ReasonAccessKeyInvalid),
//	// after calling sr.Verify with a dummy key so that the timing stays uniform
//	err = sr.Verify(sk)                                             // steps 5–10, 12, 13
//	err = iam.CheckSecurityToken(r, temporary, hash)                // step 14
//
// VerifyRequest runs CheckRequest and Verify in one call. Every refusal is a *Failure whose
// Reason is a key of §11.4 and whose Err is KPS.6102 with the exact text of that reason; only
// ReasonSignatureMismatch counts towards the AK lockout (§12.4).

// Algorithm names and headers of the Huawei signing scheme.
const (
	// AlgorithmSDKHMACSHA256 is what every Huawei SDK and the Terraform provider send; it is
	// always accepted.
	AlgorithmSDKHMACSHA256 = "SDK-HMAC-SHA256"
	// AlgorithmV11HMACSHA256 is the optional derived-key scheme of §6.9, accepted only when
	// SignatureConfig.V11Region is set.
	AlgorithmV11HMACSHA256 = "V11-HMAC-SHA256"

	HeaderSDKDate       = "X-Sdk-Date"
	HeaderContentSHA256 = "X-Sdk-Content-Sha256"
	HeaderSecurityToken = "X-Security-Token"
	// UnsignedPayload in X-Sdk-Content-Sha256 replaces the payload hash (§6.5).
	UnsignedPayload = "UNSIGNED-PAYLOAD"
	// SDKDateLayout is the only accepted form of X-Sdk-Date.
	SDKDateLayout = "20060102T150405Z"

	// SignatureClockSkew is how far X-Sdk-Date may be from the server clock, inclusive (§6.6).
	// It is not configurable below this maximum because the reason text names 15 minutes.
	SignatureClockSkew = 15 * time.Minute
	// MaxAuthorizationBytes is the longest Authorization value parsed (§6.2).
	MaxAuthorizationBytes = 8 << 10
	// MaxSignedHeaders is the most names SignedHeaders may list (§6.2).
	MaxSignedHeaders = 64
)

// signatureSchemes are the algorithm names of §6.9; a header starting with one of them followed
// by a space makes the request an AK/SK request (§4.2), enabled or not.
var signatureSchemes = []string{
	AlgorithmSDKHMACSHA256,
	"SDK-HMAC-SM3",
	"SDK-ECDSA-P256-SHA256",
	"SDK-SM2-SM3",
	AlgorithmV11HMACSHA256,
}

// IsSignatureScheme reports whether an Authorization header value claims an AK/SK signature:
// it starts with one of the algorithm names of auth.md §6.9 and a space (§4.2 step 2).
func IsSignatureScheme(h string) bool {
	for _, s := range signatureSchemes {
		if len(h) > len(s) && h[len(s)] == ' ' && h[:len(s)] == s {
			return true
		}
	}
	return false
}

// Reason keys of KPS.6102 that concern AK/SK requests (auth.md §11.4).
const (
	ReasonConflictingCredentials = "conflicting-credentials"
	ReasonAuthorizationMalformed = "authorization-malformed"
	ReasonUnsupportedAlgorithm   = "unsupported-algorithm"
	ReasonDateMalformed          = "date-malformed"
	ReasonDateOutOfWindow        = "date-out-of-window"
	ReasonDateNotSigned          = "date-not-signed"
	ReasonSignedHeaderMissing    = "signed-header-missing"
	ReasonUnsignedPayload        = "unsigned-payload"
	ReasonPayloadHashMismatch    = "payload-hash-mismatch"
	ReasonAccessKeyInvalid       = "access-key-invalid"
	ReasonCredentialExpired      = "credential-expired"
	// ReasonSignatureMismatch is the only failure that counts towards the lockout of an
	// (AK, client IP) pair (§12.4).
	ReasonSignatureMismatch    = "signature-mismatch"
	ReasonSecurityTokenInvalid = "security-token-invalid"
	ReasonReplayed             = "replayed"
)

// signatureReasonText holds the exact texts of §11.4; signed-header-missing is formatted by
// headerMissing because it names the header.
var signatureReasonText = map[string]string{
	ReasonConflictingCredentials: "both X-Auth-Token and an AK/SK signature were sent",
	ReasonAuthorizationMalformed: "the Authorization header is malformed",
	ReasonUnsupportedAlgorithm:   "the signing algorithm is not supported",
	ReasonDateMalformed:          "X-Sdk-Date is missing or malformed",
	ReasonDateOutOfWindow:        "X-Sdk-Date is more than 15 minutes away from the server time",
	ReasonDateNotSigned:          "X-Sdk-Date is not a signed header",
	ReasonUnsignedPayload:        "an unsigned payload is not accepted for a request with a body",
	ReasonPayloadHashMismatch:    "X-Sdk-Content-Sha256 does not match the body",
	ReasonAccessKeyInvalid:       "the access key is unknown or inactive",
	ReasonCredentialExpired:      "the temporary credential has expired",
	ReasonSignatureMismatch:      "the request signature does not match",
	ReasonSecurityTokenInvalid:   "the security token is missing or invalid",
	ReasonReplayed:               "the request was already received",
}

// SignatureFailure returns the refusal (a *Failure, KPS.6102) for one of the reasons above
// that the caller decides itself: access-key-invalid, credential-expired, replayed,
// conflicting-credentials. It panics on a reason it does not know (a programming error) and on
// signed-header-missing, which only this file raises because its text names the header.
func SignatureFailure(reason string) error {
	text, ok := signatureReasonText[reason]
	if !ok {
		panic("iam: no KPS.6102 text for reason " + reason)
	}
	return &Failure{Reason: reason, Err: badCredentials(text)}
}

func badCredentials(text string) *kps.Error {
	return kps.Errorf(kps.ErrBadCredentials, "Incorrect authentication information: %s.", text)
}

// headerMissing names n, which ParseAuthorization has restricted to a lower-case token.
func headerMissing(n string) error {
	return &Failure{Reason: ReasonSignedHeaderMissing, Err: badCredentials("signed header " + n + " is not present")}
}

// Authorization is a parsed AK/SK Authorization header (auth.md §6.2).
type Authorization struct {
	Algorithm string
	AccessKey string
	// Scope is the V11 credential scope "YYYYMMDD/<region>/<service>"; empty otherwise.
	Scope string
	// SignedHeaders are lower-case header names, in the client's order.
	SignedHeaders []string
	// Signature is the decoded signature (32 bytes).
	Signature []byte
}

// Header renders a as an Authorization header value, in the form the Go SDK sends.
func (a Authorization) Header() string {
	cred := "Access=" + a.AccessKey
	if a.Algorithm == AlgorithmV11HMACSHA256 {
		cred = "Credential=" + a.AccessKey + "/" + a.Scope
	}
	return a.Algorithm + " " + cred + ", SignedHeaders=" + strings.Join(a.SignedHeaders, ";") +
		", Signature=" + hex.EncodeToString(a.Signature)
}

// String is the form access logs may record (§12.5): without the signature, which is a
// replayable credential for the rest of the date window.
func (a Authorization) String() string {
	return a.Algorithm + " Access=" + a.AccessKey + ", SignedHeaders=" + strings.Join(a.SignedHeaders, ";")
}

// GoString keeps %#v from printing the signature.
func (a Authorization) GoString() string { return a.String() }

// SignatureConfig holds the optional parts of AK/SK verification (auth.md §13
// auth.aksk.algorithms and auth.aksk.v11_services). The zero value accepts SDK-HMAC-SHA256 only.
type SignatureConfig struct {
	// V11Region, when set, enables V11-HMAC-SHA256 for credentials scoped to this region.
	V11Region string
	// V11Services are the service names a V11 scope may carry; empty means "kps".
	V11Services []string
}

// ParseAuthorization parses an SDK-HMAC-SHA256 Authorization header (auth.md §6.2, §6.3 step 1)
// with the zero SignatureConfig.
func ParseAuthorization(h string) (Authorization, error) {
	return SignatureConfig{}.ParseAuthorization(h)
}

// ParseAuthorization parses `<algorithm> Access=<AK>, SignedHeaders=<h1;h2>, Signature=<hex>`
// (for V11: `Credential=<AK>/<date>/<region>/<service>`). The items may come in any order with
// optional spaces after the commas. A disabled or unknown algorithm is unsupported-algorithm;
// anything else that deviates from §6.2 is authorization-malformed, and so is a V11 scope for
// another region or a service not allowed.
func (c SignatureConfig) ParseAuthorization(h string) (Authorization, error) {
	var a Authorization
	if len(h) > MaxAuthorizationBytes {
		return a, SignatureFailure(ReasonAuthorizationMalformed)
	}
	alg, rest, ok := strings.Cut(h, " ")
	if !ok {
		return a, SignatureFailure(ReasonAuthorizationMalformed)
	}
	credItem := "Access"
	switch {
	case alg == AlgorithmSDKHMACSHA256:
	case alg == AlgorithmV11HMACSHA256 && c.V11Region != "":
		credItem = "Credential"
	default:
		return a, SignatureFailure(ReasonUnsupportedAlgorithm)
	}
	a.Algorithm = alg

	var items [3]string // credential, signed headers, signature
	var seen [3]bool
	first := true
	for item := range strings.SplitSeq(rest, ",") {
		if !first {
			item = strings.TrimLeft(item, " \t")
		}
		first = false
		key, val, _ := strings.Cut(item, "=")
		var i int
		switch key {
		case credItem:
			i = 0
		case "SignedHeaders":
			i = 1
		case "Signature":
			i = 2
		default: // also the empty item of ",," or a trailing comma
			return a, SignatureFailure(ReasonAuthorizationMalformed)
		}
		if seen[i] || val == "" {
			return a, SignatureFailure(ReasonAuthorizationMalformed)
		}
		seen[i], items[i] = true, val
	}
	if seen != [3]bool{true, true, true} {
		return a, SignatureFailure(ReasonAuthorizationMalformed)
	}

	a.AccessKey = items[0]
	if alg == AlgorithmV11HMACSHA256 {
		ak, scope, _ := strings.Cut(items[0], "/")
		if !c.validV11Scope(scope) {
			return a, SignatureFailure(ReasonAuthorizationMalformed)
		}
		a.AccessKey, a.Scope = ak, scope
	}
	if !validAccessKey(a.AccessKey) {
		return a, SignatureFailure(ReasonAuthorizationMalformed)
	}

	names, ok := parseSignedHeaders(items[1])
	if !ok {
		return a, SignatureFailure(ReasonAuthorizationMalformed)
	}
	a.SignedHeaders = names

	if len(items[2]) != 2*sha256.Size {
		return a, SignatureFailure(ReasonAuthorizationMalformed)
	}
	sig, err := hex.DecodeString(items[2]) // also accepts upper-case hex, as §6.2 allows
	if err != nil {
		return a, SignatureFailure(ReasonAuthorizationMalformed)
	}
	a.Signature = sig
	return a, nil
}

// validAccessKey accepts visible ASCII: an AK goes into logs and store lookups as is.
func validAccessKey(ak string) bool {
	if ak == "" {
		return false
	}
	for i := 0; i < len(ak); i++ {
		if ak[i] <= ' ' || ak[i] > '~' {
			return false
		}
	}
	return true
}

func (c SignatureConfig) validV11Scope(scope string) bool {
	parts := strings.Split(scope, "/")
	if len(parts) != 3 {
		return false
	}
	day, region, service := parts[0], parts[1], parts[2]
	if t, err := time.Parse("20060102", day); err != nil || t.Format("20060102") != day {
		return false
	}
	services := c.V11Services
	if len(services) == 0 {
		services = []string{"kps"}
	}
	return region == c.V11Region && slices.Contains(services, service)
}

// parseSignedHeaders splits SignedHeaders: 1 to 64 distinct names, each a lower-case HTTP token.
func parseSignedHeaders(s string) ([]string, bool) {
	if strings.Count(s, ";") >= MaxSignedHeaders {
		return nil, false
	}
	names := strings.Split(s, ";")
	for i, n := range names {
		if n == "" || slices.Contains(names[:i], n) {
			return nil, false
		}
		for j := 0; j < len(n); j++ {
			if !isLowerTokenByte(n[j]) {
				return nil, false
			}
		}
	}
	return names, true
}

// isLowerTokenByte reports whether b is an RFC 9110 tchar other than an upper-case letter.
func isLowerTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// SignedRequest is a request whose signature passed every check that needs no secret key
// (auth.md §6.3 steps 2–4). Verify completes the recipe once the caller has the key. The
// request must not change in between.
type SignedRequest struct {
	r           *http.Request
	auth        Authorization
	headers     map[string][]string // lower-cased names
	date        string
	payloadHash string
}

// CheckRequest runs §6.3 steps 2–4 on r, whose body the caller has already read (within the
// route's limit) into body: X-Sdk-Date well formed (date-malformed), within 15 minutes of now
// (date-out-of-window) and signed (date-not-signed); then the payload hash of §6.5
// (unsigned-payload, payload-hash-mismatch). For V11 the scope's date must be X-Sdk-Date's
// (authorization-malformed). The body is hashed as received: no decoding of any kind.
func CheckRequest(r *http.Request, body []byte, a Authorization, now time.Time) (*SignedRequest, error) {
	if a.Algorithm != AlgorithmSDKHMACSHA256 && a.Algorithm != AlgorithmV11HMACSHA256 {
		return nil, SignatureFailure(ReasonUnsupportedAlgorithm)
	}
	s := &SignedRequest{r: r, auth: a, headers: lowerHeaders(r.Header)}

	// Step 2. Two X-Sdk-Date lines would leave the string to sign ambiguous.
	dates := s.headers["x-sdk-date"]
	if len(dates) != 1 {
		return nil, SignatureFailure(ReasonDateMalformed)
	}
	s.date = dates[0]
	t, err := time.Parse(SDKDateLayout, s.date)
	if err != nil || t.Format(SDKDateLayout) != s.date {
		return nil, SignatureFailure(ReasonDateMalformed)
	}
	if skew := now.Sub(t); skew > SignatureClockSkew || skew < -SignatureClockSkew {
		return nil, SignatureFailure(ReasonDateOutOfWindow)
	}
	if !slices.Contains(a.SignedHeaders, "x-sdk-date") {
		return nil, SignatureFailure(ReasonDateNotSigned)
	}
	if a.Algorithm == AlgorithmV11HMACSHA256 && !strings.HasPrefix(a.Scope, s.date[:8]+"/") {
		return nil, SignatureFailure(ReasonAuthorizationMalformed)
	}

	// Step 4.
	sum := sha256.Sum256(body)
	bodyHash := hex.EncodeToString(sum[:])
	switch ph := s.headers["x-sdk-content-sha256"]; {
	case len(ph) == 0:
		s.payloadHash = bodyHash
	case len(ph) > 1:
		return nil, SignatureFailure(ReasonPayloadHashMismatch)
	case ph[0] == UnsignedPayload:
		// Every operation takes JSON, so an unsigned body could only be a swapped one.
		if len(body) > 0 {
			return nil, SignatureFailure(ReasonUnsignedPayload)
		}
		s.payloadHash = UnsignedPayload
	case strings.EqualFold(ph[0], bodyHash):
		s.payloadHash = ph[0] // as sent: the client hashed its own spelling
	default:
		return nil, SignatureFailure(ReasonPayloadHashMismatch)
	}
	return s, nil
}

// Verify runs §6.3 steps 5–10, 12 and 13 with the secret key sk: the canonical request (a
// query that does not parse is authorization-malformed, a signed header the request lacks is
// signed-header-missing), the string to sign, HMAC-SHA256 and a constant-time comparison
// (signature-mismatch). Neither the expected signature nor the string to sign ever leave it.
func (s *SignedRequest) Verify(sk string) error {
	cr, err := canonicalRequest(s.r, s.headers, s.auth.SignedHeaders, s.payloadHash)
	if err != nil {
		return err
	}
	key := []byte(sk)
	if s.auth.Algorithm == AlgorithmV11HMACSHA256 {
		if key, err = v11Key(s.auth.AccessKey, sk, s.auth.Scope); err != nil {
			return err
		}
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(stringToSign(s.auth.Algorithm, s.date, s.auth.Scope, cr)))
	if !hmac.Equal(mac.Sum(nil), s.auth.Signature) {
		return SignatureFailure(ReasonSignatureMismatch)
	}
	return nil
}

// VerifyRequest is CheckRequest followed by Verify, for callers that already hold the secret
// key. Servers call the two halves around the key lookup instead (see the top of this file).
func VerifyRequest(r *http.Request, body []byte, a Authorization, sk string, now time.Time) error {
	s, err := CheckRequest(r, body, a, now)
	if err != nil {
		return err
	}
	return s.Verify(sk)
}

// CheckSecurityToken is §6.3 step 14. For a temporary credential, X-Security-Token must be
// sent once and its SHA-256, in lower-case hex, must equal storedHash; a permanent credential
// must come without the header. Anything else is security-token-invalid. The header need not
// be signed (Terraform does not sign it).
func CheckSecurityToken(r *http.Request, temporary bool, storedHash string) error {
	tokens := lowerHeaders(r.Header)["x-security-token"]
	if !temporary {
		if len(tokens) > 0 {
			return SignatureFailure(ReasonSecurityTokenInvalid)
		}
		return nil
	}
	if len(tokens) != 1 {
		return SignatureFailure(ReasonSecurityTokenInvalid)
	}
	sum := sha256.Sum256([]byte(tokens[0]))
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(storedHash)) != 1 {
		return SignatureFailure(ReasonSecurityTokenInvalid)
	}
	return nil
}

// Sign signs r as the Huawei Go SDK does (auth.md §6.1, §6.5): it sets X-Sdk-Date to now; adds
// X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD when that header is not preset and Content-Type
// names neither JSON nor BSON; signs every header of r.Header except Content-Type*, names
// containing "_", Host and Authorization; and sets Authorization. A preset
// X-Sdk-Content-Sha256 is used verbatim as the payload hash, as the SDK does. body must be the
// bytes r will send; Sign does not touch r.Body.
func Sign(r *http.Request, body []byte, ak, sk string, now time.Time) error {
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	for k := range r.Header {
		if strings.EqualFold(k, HeaderSDKDate) || strings.EqualFold(k, "Authorization") {
			delete(r.Header, k)
		}
	}
	r.Header.Set(HeaderSDKDate, now.UTC().Format(SDKDateLayout))
	if len(lowerHeaders(r.Header)["x-sdk-content-sha256"]) == 0 {
		ct := r.Header.Get("Content-Type")
		if ct != "" && !strings.Contains(ct, "application/json") && !strings.Contains(ct, "application/bson") {
			r.Header.Set(HeaderContentSHA256, UnsignedPayload)
		}
	}
	var names []string
	for n := range lowerHeaders(r.Header) {
		if !strings.HasPrefix(n, "content-type") && !strings.Contains(n, "_") && n != "host" && n != "authorization" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return signWith(r, body, Authorization{Algorithm: AlgorithmSDKHMACSHA256, AccessKey: ak, SignedHeaders: names}, sk)
}

// signWith signs r with the algorithm, AK, scope and header list of a; X-Sdk-Date must be set.
// Tests use it to sign the way other clients do (Terraform, the Python SDK, V11).
func signWith(r *http.Request, body []byte, a Authorization, sk string) error {
	h := lowerHeaders(r.Header)
	dates := h["x-sdk-date"]
	if len(dates) != 1 {
		return fmt.Errorf("iam: sign: need exactly one %s header", HeaderSDKDate)
	}
	var ph string
	if preset := h["x-sdk-content-sha256"]; len(preset) > 0 {
		ph = preset[0]
	} else {
		sum := sha256.Sum256(body)
		ph = hex.EncodeToString(sum[:])
	}
	cr, err := canonicalRequest(r, h, a.SignedHeaders, ph)
	if err != nil {
		return fmt.Errorf("iam: sign: %w", err)
	}
	key := []byte(sk)
	if a.Algorithm == AlgorithmV11HMACSHA256 {
		if key, err = v11Key(a.AccessKey, sk, a.Scope); err != nil {
			return err
		}
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(stringToSign(a.Algorithm, dates[0], a.Scope, cr)))
	a.Signature = mac.Sum(nil)
	r.Header.Set("Authorization", a.Header())
	return nil
}

// v11Key is the V11 HMAC key: the lower-case hex of HKDF-SHA256(SK, salt AK, info scope), as
// ASCII (§6.9).
func v11Key(ak, sk, scope string) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, []byte(sk), []byte(ak), scope, 32)
	if err != nil {
		return nil, fmt.Errorf("iam: V11 key derivation: %w", err)
	}
	return []byte(hex.EncodeToString(k)), nil
}

// lowerHeaders indexes h by lower-case name, so that names match case-insensitively even in
// header maps whose keys were not canonicalised (client-side requests).
func lowerHeaders(h http.Header) map[string][]string {
	m := make(map[string][]string, len(h))
	for k, v := range h {
		l := strings.ToLower(k)
		m[l] = append(m[l], v...)
	}
	return m
}

// stringToSign is §6.3 step 10 (and the V11 form of §6.9, which adds the scope line).
func stringToSign(alg, date, scope, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	if alg == AlgorithmV11HMACSHA256 {
		return alg + "\n" + date + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	}
	return alg + "\n" + date + "\n" + hex.EncodeToString(sum[:])
}

// canonicalRequest is §6.3 steps 5–8; headers is r.Header indexed by lowerHeaders.
func canonicalRequest(r *http.Request, headers map[string][]string, signed []string, payloadHash string) (string, error) {
	method := r.Method
	if method == "" {
		method = http.MethodGet // what net/http sends for a client request without a method
	}
	cq, err := canonicalQuery(r.URL.RawQuery)
	if err != nil {
		return "", err
	}
	ch, err := canonicalHeaders(r, headers, signed)
	if err != nil {
		return "", err
	}
	return method + "\n" + canonicalURI(r.URL.Path) + "\n" + cq + "\n" + ch + "\n" +
		strings.Join(signed, ";") + "\n" + payloadHash, nil
}

// canonicalURI is §6.3 step 5 on the decoded path. Encoding every segment and joining them
// with "/" is the same as encoding every byte but "/".
func canonicalURI(path string) string {
	cu := sigEscape(path, true)
	if !strings.HasSuffix(cu, "/") {
		cu += "/"
	}
	return cu
}

// canonicalQuery is §6.3 step 6: decode with form semantics, sort names and then each name's
// values by their decoded bytes, and re-encode.
func canonicalQuery(raw string) (string, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "", SignatureFailure(ReasonAuthorizationMalformed)
	}
	var b strings.Builder
	for i, name := range slices.Sorted(maps.Keys(q)) {
		values := slices.Clone(q[name])
		slices.Sort(values)
		for j, v := range values {
			if i > 0 || j > 0 {
				b.WriteByte('&')
			}
			b.WriteString(sigEscape(name, false))
			b.WriteByte('=')
			b.WriteString(sigEscape(v, false))
		}
	}
	return b.String(), nil
}

// canonicalHeaders is §6.3 step 7: one "name:value" line per value, in the order of signed,
// each name's values sorted before trimming, and a final LF.
func canonicalHeaders(r *http.Request, headers map[string][]string, signed []string) (string, error) {
	var b strings.Builder
	for _, n := range signed {
		var values []string
		if n == "host" {
			// net/http keeps Host out of r.Header; a client-side request may leave r.Host empty.
			if host := cmp.Or(r.Host, r.URL.Host); host != "" {
				values = []string{host}
			}
		} else {
			values = slices.Clone(headers[n])
		}
		if len(values) == 0 {
			return "", headerMissing(n)
		}
		slices.Sort(values)
		for _, v := range values {
			b.WriteString(n)
			b.WriteByte(':')
			b.WriteString(strings.TrimSpace(v))
			b.WriteByte('\n')
		}
	}
	return b.String(), nil
}

// sigEscape is the enc() of §6.3 step 9: every byte but A–Z a–z 0–9 - _ . ~ (and "/" when
// keepSlash) becomes %XX with upper-case hex.
func sigEscape(s string, keepSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || keepSlash && c == '/' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}
