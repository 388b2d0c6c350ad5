package smartauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// maxKeyFile bounds what LoadKey reads: a key file is a few KiB, so anything larger is a
// wrong path (an export folder, a log), not a key.
const maxKeyFile = 1 << 20

// Key is a private signing key with its JOSE algorithm and key ID, ready to sign client
// assertions. It never prints its private part (String and GoString are redacted).
type Key struct {
	jwk jose.JSONWebKey // private key; KeyID set, so go-jose puts kid in the JWS header
	alg jose.SignatureAlgorithm
}

// Alg returns the JOSE signature algorithm, e.g. "RS384".
func (k *Key) Alg() string { return string(k.alg) }

// KeyID returns the kid the server looks the public key up by.
func (k *Key) KeyID() string { return k.jwk.KeyID }

// String describes the key without its private part.
func (k *Key) String() string { return fmt.Sprintf("%s key %q", k.alg, k.jwk.KeyID) }

// GoString describes the key without its private part.
func (k *Key) GoString() string { return k.String() }

// LoadKey reads a private key from a JWKS, a single JWK, or a PEM file (DESIGN.md §2, Auth).
// Errors name the file. It does not check the file's permissions: see KeyFileWarning.
func LoadKey(path string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read smart key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read smart key: %w", err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("smart key %s: larger than %d bytes, not a key file", path, maxKeyFile)
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("smart key %s: %w", path, err)
	}
	return k, nil
}

// ParseKey reads a private key from JWKS, JWK or PEM bytes. In a JWKS the first key that has
// kid and alg, holds a private part, and whose alg signs with its key type is used: the seed's
// `jose jwk gen` output qualifies. A PEM key gets RS384 (RSA) or ES256/ES384/ES512 (by curve),
// the algorithms SMART Backend Services names, and its RFC 7638 thumbprint as kid.
func ParseKey(data []byte) (*Key, error) {
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	switch {
	case len(trimmed) == 0:
		return nil, errors.New("empty key file")
	case trimmed[0] == '{':
		return parseJWKJSON(trimmed)
	case bytes.Contains(trimmed, []byte("-----BEGIN ")):
		return parsePEM(trimmed)
	}
	return nil, errors.New("neither a JWKS, a JWK nor a PEM private key")
}

// parseJWKJSON reads a JWKS ({"keys":[...]}) or one JWK object. Each key is parsed on its own so
// that one key go-jose cannot read (RFC 7517 §5: ignore what is not understood) does not hide a
// usable one after it.
func parseJWKJSON(data []byte) (*Key, error) {
	var top struct {
		Keys *[]json.RawMessage `json:"keys"`
		Kty  string             `json:"kty"`
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("parse JSON key: %w", err)
	}
	if top.Keys == nil {
		if top.Kty == "" {
			return nil, errors.New(`neither a JWKS (no "keys") nor a JWK (no "kty")`)
		}
		k, why := jwkKey(data)
		if k == nil {
			return nil, fmt.Errorf("not a usable signing key: %s", why)
		}
		return k, nil
	}
	if len(*top.Keys) == 0 {
		return nil, errors.New("no keys in the JWKS")
	}
	var skipped []string
	for i, raw := range *top.Keys {
		k, why := jwkKey(raw)
		if k != nil {
			return k, nil
		}
		skipped = append(skipped, fmt.Sprintf("key %d: %s", i+1, why))
	}
	return nil, fmt.Errorf("no private signing key with kid and alg in the JWKS (%s)", strings.Join(skipped, "; "))
}

// jwkKey returns the key in raw, or nil and why it cannot sign client assertions.
func jwkKey(raw []byte) (*Key, string) {
	var meta struct {
		Kid    string   `json:"kid"`
		Alg    string   `json:"alg"`
		Use    string   `json:"use"`
		KeyOps []string `json:"key_ops"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, "not a JSON object with string kid, alg and use"
	}
	switch {
	case meta.Kid == "":
		return nil, "no kid"
	case meta.Alg == "":
		return nil, fmt.Sprintf("kid %q has no alg", meta.Kid)
	case meta.Use != "" && meta.Use != "sig":
		return nil, fmt.Sprintf("kid %q is for use %q, not sig", meta.Kid, meta.Use)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Sprintf("kid %q: %v", meta.Kid, err)
	}
	if jwk.IsPublic() {
		// Checked before key_ops: `jose jwk pub` marks public keys "verify", and "this is the
		// public key" is what a user who passed public.jwks needs to hear.
		return nil, fmt.Sprintf("kid %q is a public key (use the private JWKS)", meta.Kid)
	}
	if _, ok := jwk.Key.([]byte); ok {
		return nil, fmt.Sprintf("kid %q is a symmetric key, which cannot sign an asymmetric client assertion", meta.Kid)
	}
	if meta.KeyOps != nil && !slices.Contains(meta.KeyOps, "sign") {
		return nil, fmt.Sprintf("kid %q key_ops lacks sign", meta.Kid)
	}
	if !jwk.Valid() {
		return nil, fmt.Sprintf("kid %q is missing key parameters", meta.Kid)
	}
	alg := jose.SignatureAlgorithm(meta.Alg)
	if err := algFits(alg, jwk.Key); err != nil {
		return nil, fmt.Sprintf("kid %q: %v", meta.Kid, err)
	}
	return &Key{jwk: jwk, alg: alg}, ""
}

// algFits reports whether alg signs with priv. Only RSA and EC keys qualify: SMART Backend
// Services requires servers to accept RS384 and ES384 and names no others.
func algFits(alg jose.SignatureAlgorithm, priv any) error {
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return nil
		}
		return fmt.Errorf("alg %s does not sign with an RSA key", alg)
	case *ecdsa.PrivateKey:
		want, err := ecAlg(p.Curve)
		if err != nil {
			return err
		}
		if alg != want {
			return fmt.Errorf("alg %s does not sign with a %s key (want %s)", alg, p.Curve.Params().Name, want)
		}
		return nil
	}
	return fmt.Errorf("key type %T is not RSA or EC", priv)
}

// ecAlg maps a curve to its one JOSE algorithm (RFC 7518 §3.4).
func ecAlg(c elliptic.Curve) (jose.SignatureAlgorithm, error) {
	switch c {
	case elliptic.P256():
		return jose.ES256, nil
	case elliptic.P384():
		return jose.ES384, nil
	case elliptic.P521():
		return jose.ES512, nil
	}
	return "", fmt.Errorf("curve %s has no JOSE signing algorithm", c.Params().Name)
}

// parsePEM takes the first private key block. Other blocks are skipped: `openssl ecparam
// -genkey` writes an "EC PARAMETERS" block before the key, and some files bundle a certificate.
func parsePEM(data []byte) (*Key, error) {
	var sawPublic bool
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Headers["Proc-Type"] != "" || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("encrypted PEM key; decrypt it first (openssl pkey -in KEY -out private.pem) and chmod 600 the result")
		}
		var priv any
		var err error
		switch block.Type {
		case "RSA PRIVATE KEY":
			priv, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "PRIVATE KEY":
			priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			priv, err = x509.ParseECPrivateKey(block.Bytes)
		case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
			sawPublic = true
			continue
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse PEM %s: %w", block.Type, err)
		}
		return pemKey(priv)
	}
	if sawPublic {
		return nil, errors.New("the PEM holds a public key or certificate, not the private key")
	}
	return nil, errors.New("no PEM private key block (RSA PRIVATE KEY, PRIVATE KEY or EC PRIVATE KEY)")
}

// pemKey chooses the algorithm a PEM key signs with and derives its kid: PEM carries neither,
// and a thumbprint is what servers that import a PEM public key compute for it (RFC 7638).
func pemKey(priv any) (*Key, error) {
	var alg jose.SignatureAlgorithm
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		alg = jose.RS384
	case *ecdsa.PrivateKey:
		a, err := ecAlg(p.Curve)
		if err != nil {
			return nil, err
		}
		alg = a
	default:
		return nil, fmt.Errorf("key type %T is not RSA or EC", priv)
	}
	pub := jose.JSONWebKey{Key: priv.(crypto.Signer).Public()}
	sum, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("compute key thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(sum)
	return &Key{jwk: jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(alg), Use: "sig"}, alg: alg}, nil
}

// KeyFileWarning returns a warning for the user when the key file at path is readable by its
// group or by others, and "" otherwise (or when the file cannot be checked: LoadKey reports
// that). Tools print it on stderr and go on, as ssh does not: refusing would break CI setups
// that mount secrets with loose modes.
func KeyFileWarning(path string) string {
	if runtime.GOOS == "windows" {
		return "" // permission bits do not describe Windows ACLs
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	if fi.Mode().Perm()&0o044 != 0 {
		return fmt.Sprintf("warning: %s is readable by others (chmod 600 it)", path)
	}
	return ""
}
