package fhirtest

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// assertionAlgs are the client-assertion algorithms accepted: SMART Backend Services requires
// RS384 and ES384; ES256 and ES512 come with EC keys of other sizes (DESIGN.md §2).
var assertionAlgs = []jose.SignatureAlgorithm{jose.RS384, jose.ES256, jose.ES384, jose.ES512}

// maxAssertionLife is how far in the future a client assertion may expire (SMART Backend
// Services: "no more than five minutes"), plus a little for the time on the wire.
const maxAssertionLife = 5*time.Minute + 5*time.Second

// token is an issued access token.
type token struct {
	expires time.Time
	client  string          // the SMART client it was issued to
	all     bool            // system/*.read or equivalent
	types   map[string]bool // readable types
	scope   string
}

// tokenKey carries the request's *token in its context (nil without SMART auth).
type tokenKey struct{}

// parsePublicKeys reads each entry as a JWKS, a single JWK, or PEM blocks (PKIX or PKCS#1
// public keys, certificates; private keys are reduced to their public half). A PEM key's kid is
// its RFC 7638 thumbprint, as smartauth computes it.
func parsePublicKeys(sets [][]byte) ([]jose.JSONWebKey, error) {
	var keys []jose.JSONWebKey
	for i, data := range sets {
		n := len(keys)
		var set jose.JSONWebKeySet
		var one jose.JSONWebKey
		switch {
		case json.Unmarshal(data, &set) == nil && len(set.Keys) > 0:
			for _, k := range set.Keys {
				keys = append(keys, k.Public())
			}
		case json.Unmarshal(data, &one) == nil && one.Key != nil:
			keys = append(keys, one.Public())
		default:
			for rest := data; ; {
				var b *pem.Block
				if b, rest = pem.Decode(rest); b == nil {
					break
				}
				pub, err := pemPublic(b)
				if err != nil {
					return nil, fmt.Errorf("public key %d: %w", i+1, err)
				}
				k := jose.JSONWebKey{Key: pub}
				tp, err := k.Thumbprint(crypto.SHA256)
				if err != nil {
					return nil, fmt.Errorf("public key %d: %w", i+1, err)
				}
				k.KeyID = base64.RawURLEncoding.EncodeToString(tp)
				keys = append(keys, k)
			}
		}
		for _, k := range keys[n:] {
			if k.Key == nil || !k.Valid() {
				return nil, fmt.Errorf("public key %d: not a usable public key", i+1)
			}
		}
		if len(keys) == n {
			return nil, fmt.Errorf("public key %d: neither a JWKS nor a PEM public key", i+1)
		}
	}
	return keys, nil
}

// pemPublic returns the public key in one PEM block.
func pemPublic(b *pem.Block) (any, error) {
	switch b.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(b.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(b.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		return k.(crypto.Signer).Public(), nil
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		return k.Public(), nil
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		return k.Public(), nil
	}
	return nil, fmt.Errorf("PEM block %q is not a public key", b.Type)
}

// oauthError answers a token request with an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, "application/json", map[string]string{"error": code, "error_description": desc})
}

// handleToken is the token endpoint of SMART Backend Services: client_credentials with a
// private_key_jwt client assertion, verified against the registered public keys.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if s.opts.Auth != AuthSMART {
		writeOutcome(w, http.StatusNotFound, "not-found", "this server runs without authorization (--auth none)")
		return
	}
	if r.Method != http.MethodPost {
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "read form: "+err.Error())
		return
	}
	f := r.PostForm
	switch {
	case f.Get("grant_type") != "client_credentials":
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	case f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
		oauthError(w, http.StatusBadRequest, "invalid_request", "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		return
	case f.Get("client_assertion") == "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "client_assertion is missing")
		return
	case f.Get("scope") == "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "scope is missing")
		return
	}
	now := s.now()
	client, err := s.verifyAssertion(f.Get("client_assertion"), now)
	switch {
	case err == nil && f.Get("client_id") != "" && f.Get("client_id") != client:
		oauthError(w, http.StatusBadRequest, "invalid_client", "client_id is not the registered client")
		return
	case err != nil:
		oauthError(w, http.StatusBadRequest, "invalid_client", err.Error())
		return
	}
	if s.opts.StrictScopes {
		if typ := s.unservedScopeType(f.Get("scope")); typ != "" {
			// The SMART reference server's answer, word for word.
			oauthError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("Resources of type %q do not exist on this server", typ))
			return
		}
	}
	tok := grant(f.Get("scope"))
	if tok.scope == "" {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "no system/ read scope in "+f.Get("scope"))
		return
	}
	tok.expires, tok.client = now.Add(s.opts.TokenTTL), client
	value := rand.Text()
	s.mu.Lock()
	s.tokens[value] = tok
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, "application/json", map[string]any{
		"access_token": value,
		"token_type":   "bearer",
		// Whole seconds on the wire (RFC 6749), rounded up; the server enforces the exact TTL.
		"expires_in": int64((s.opts.TokenTTL + time.Second - 1) / time.Second),
		"scope":      tok.scope,
	})
}

// verifyAssertion checks the client-assertion JWT: signature by a key of its client (the one of
// Options.ClientID, or one registered at /auth/register), iss = sub = client id, aud = this token
// URL, exp in the future and at most five minutes away, jti new. It returns the client id.
func (s *Server) verifyAssertion(assertion string, now time.Time) (string, error) {
	tok, err := jwt.ParseSigned(assertion, assertionAlgs)
	if err != nil {
		return "", fmt.Errorf("client_assertion: %w", err)
	}
	client, keys := s.clientKeys(tok)
	kid := tok.Headers[0].KeyID
	cands := slices.DeleteFunc(slices.Clone(keys), func(k jose.JSONWebKey) bool { return kid != "" && k.KeyID != kid })
	if len(cands) == 0 {
		cands = keys // a kid we do not know: try every key, as lenient servers do
	}
	var claims jwt.Claims
	verified := false
	for _, k := range cands {
		if tok.Claims(k.Key, &claims) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return "", fmt.Errorf("client_assertion: signature not verified by any registered key (kid %q, alg %s)", kid, tok.Headers[0].Algorithm)
	}
	err = claims.ValidateWithLeeway(jwt.Expected{Issuer: client, Subject: client,
		AnyAudience: jwt.Audience{s.tokenURL()}, Time: now}, 5*time.Second)
	switch {
	case err != nil:
		return "", fmt.Errorf("client_assertion claims (want iss = sub = %q, aud = %q): %w", client, s.tokenURL(), err)
	case claims.Expiry == nil:
		return "", errors.New("client_assertion: exp is missing")
	case !claims.Expiry.Time().After(now):
		return "", errors.New("client_assertion: expired")
	case claims.Expiry.Time().After(now.Add(maxAssertionLife)):
		return "", errors.New("client_assertion: exp is more than five minutes ahead")
	case claims.ID == "":
		return "", errors.New("client_assertion: jti is missing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.DeleteFunc(s.jtis, func(_ string, exp time.Time) bool { return exp.Before(now) })
	if _, ok := s.jtis[claims.ID]; ok {
		return "", errors.New("client_assertion: jti was already used")
	}
	s.jtis[claims.ID] = claims.Expiry.Time()
	return client, nil
}

// grant reads the requested scopes and keeps the system-level read grants: v1 "system/T.read"
// and "system/T.*", v2 "system/T.rs" (any permission set with r), with T a type or "*".
func grant(scope string) token {
	tok := token{types: map[string]bool{}}
	var kept []string
	for sc := range strings.FieldsSeq(scope) {
		rest, ok := strings.CutPrefix(sc, "system/")
		if !ok {
			continue
		}
		typ, perm, ok := strings.Cut(rest, ".")
		perm, _, _ = strings.Cut(perm, "?")
		if !ok || (typ != "*" && !isResourceType(typ)) {
			continue
		}
		if perm != "read" && perm != "*" && !(v2Perms(perm) && strings.Contains(perm, "r")) {
			continue
		}
		kept = append(kept, sc)
		if typ == "*" {
			tok.all = true
		} else {
			tok.types[typ] = true
		}
	}
	tok.scope = strings.Join(kept, " ")
	return tok
}

// unservedScopeType returns the first resource type that a system scope in scope names and the
// data set holds none of ("" when there is none). Binary and Medication count as unserved: the
// reference server this imitates holds neither, however this server answers their routes.
func (s *Server) unservedScopeType(scope string) string {
	for sc := range strings.FieldsSeq(scope) {
		rest, ok := strings.CutPrefix(sc, "system/")
		if !ok {
			continue
		}
		typ, _, _ := strings.Cut(rest, ".")
		if typ != "*" && !slices.Contains(s.data.types, typ) {
			return typ
		}
	}
	return ""
}

// v2Perms reports whether p is a SMART v2 permission string such as "rs" or "cruds".
func v2Perms(p string) bool {
	return p != "" && strings.Trim(p, "cruds") == ""
}

// can reports whether the token lets its holder read resources of type typ.
func (t *token) can(typ string) bool { return t == nil || t.all || t.types[typ] }

// protected routes need a valid token under SMART auth.
var protected = []string{RouteKickoff, RouteStatus, RouteBinary, routeMedication, routeGroup}

// authorize checks the Bearer token where the route needs one, and answers 401 when it is
// missing, unknown or expired (to the millisecond: clients must refresh before expires_in).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, route string, main bool) (*token, bool) {
	needs := s.opts.Auth == AuthSMART && slices.Contains(protected, route)
	fileNeeds := route == RouteFile && main && s.opts.RequiresToken
	if !needs && !fileNeeds {
		return nil, true
	}
	h := r.Header.Get("Authorization")
	if s.opts.Auth != AuthSMART {
		// requiresAccessToken without SMART: any Authorization header will do, so a client's
		// static bearer token can be tested.
		if h == "" {
			unauthorized(w, "this file requires an access token (requiresAccessToken is true)")
			return nil, false
		}
		return nil, true
	}
	value, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		unauthorized(w, "a Bearer access token is required")
		return nil, false
	}
	s.mu.Lock()
	tok, ok := s.tokens[value]
	s.mu.Unlock()
	switch {
	case !ok:
		unauthorized(w, "unknown access token")
		return nil, false
	case !s.now().Before(tok.expires):
		unauthorized(w, "the access token expired")
		return nil, false
	}
	return &tok, true
}

// forbidden answers 403 when the token's scopes do not cover typ.
func forbidden(w http.ResponseWriter, tok *token, typ string) {
	writeOutcome(w, http.StatusForbidden, "forbidden",
		fmt.Sprintf("the access token's scopes (%s) do not allow reading %s", tok.scope, typ))
}

// tokenOf returns the request's token (nil without SMART auth).
func tokenOf(r *http.Request) *token {
	t, _ := r.Context().Value(tokenKey{}).(*token)
	return t
}
