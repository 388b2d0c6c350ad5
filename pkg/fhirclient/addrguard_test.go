package fhirclient

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"testing"
)

func TestForbiddenAddress(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"169.254.169.254", true},
		{"169.254.0.1", true},
		{"::ffff:169.254.169.254", true},
		{"fe80::1", true},
		{"fe80::a9fe:a9fe%eth0", true},
		{"fd00:ec2::254", true},
		{"100.100.100.200", true},
		{"224.0.0.251", true}, // link-local multicast (mDNS)
		{"239.1.1.1", false},
		{"127.0.0.1", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"192.168.0.10", false},
		{"169.255.0.1", false},
		{"8.8.8.8", false},
	}
	for _, tt := range tests {
		if got := ForbiddenAddress(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("ForbiddenAddress(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestGuardRefusesByURL: a guarded request to a metadata address or host name, or one that a
// redirect sends there, fails at once with a ForbiddenAddressError and is not retried; without
// Guard the same client reaches the test server as before.
func TestGuardRefusesByURL(t *testing.T) {
	srv, rec := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/iam/security-credentials/", http.StatusFound)
	})
	c, clk := newTestClient(t, srv.URL+"/fhir", Options{})
	for _, target := range []string{
		"http://169.254.169.254/latest/meta-data/",
		"http://[fe80::1]:8080/x",
		"http://metadata.google.internal/computeMetadata/v1/",
		"http://METADATA.goog./x",
		srv.URL + "/fhir/Binary/redirected",
	} {
		resp, err := c.Do(t.Context(), &Request{URL: target, Route: RouteAttachment, Guard: true})
		if resp != nil {
			resp.Body.Close()
		}
		if _, ok := errors.AsType[*ForbiddenAddressError](err); !ok {
			t.Errorf("Do(%s, Guard) = %v, want a ForbiddenAddressError", target, err)
		}
	}
	if n := len(rec.Requests()); n != 1 {
		t.Errorf("the server saw %d requests, want 1 (the redirect, not retried)", n)
	}
	if s := clk.Sleeps(); len(s) != 0 {
		t.Errorf("slept %v, want no retry of a refused address", s)
	}
}

// fakeDNS answers every A query with addr and every other query with no answer, over the
// stream (TCP-style) framing that Go's resolver uses on a conn that is not a PacketConn.
func fakeDNS(addr [4]byte) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			var n [2]byte
			if _, err := io.ReadFull(server, n[:]); err != nil {
				return
			}
			q := make([]byte, binary.BigEndian.Uint16(n[:]))
			if _, err := io.ReadFull(server, q); err != nil || len(q) < 12+5 {
				return
			}
			// One question (name, type, class); the resolver's EDNS0 record after it is dropped.
			end := 12
			for end < len(q) && q[end] != 0 {
				end += int(q[end]) + 1
			}
			if end+5 > len(q) {
				return
			}
			question := q[12 : end+5]
			qtype := binary.BigEndian.Uint16(question[len(question)-4:])
			resp := append([]byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0}, question...)
			if qtype == 1 { // A
				resp[7] = 1
				resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
				resp = append(resp, addr[:]...)
			}
			server.Write(binary.BigEndian.AppendUint16(nil, uint16(len(resp))))
			server.Write(resp)
		}()
		return client, nil
	}
}

// TestGuardChecksTheResolvedAddress: a host name that resolves to the metadata address passes
// the URL check and is refused when the connection is made, on the address the resolver gave
// (the DNS trick of issue 11.14); an unguarded dial gets to try it.
func TestGuardChecksTheResolvedAddress(t *testing.T) {
	d := newDialer()
	d.Resolver = &net.Resolver{PreferGo: true, Dial: fakeDNS([4]byte{169, 254, 169, 254})}
	d.Timeout = 0
	guarded := context.WithValue(t.Context(), exchangeKey{}, &exchange{guard: true})
	_, err := d.DialContext(guarded, "tcp4", "innocent.example:80")
	if fe, ok := errors.AsType[*ForbiddenAddressError](err); !ok || fe.Addr != netip.MustParseAddr("169.254.169.254") {
		t.Fatalf("guarded dial of a name resolving to 169.254.169.254 = %v, want a ForbiddenAddressError for that address", err)
	}
	if retryableTransport(err) {
		t.Errorf("retryableTransport(%v) = true, want false", err)
	}
	// Unguarded, the dial goes through the check to the network: a context cancelled at once
	// stops it there, with another error.
	ctx, cancel := context.WithCancel(context.WithValue(t.Context(), exchangeKey{}, &exchange{}))
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		cancel()
		return guardControl(ctx, network, address, c)
	}
	_, err = d.DialContext(ctx, "tcp4", "innocent.example:80")
	if _, ok := errors.AsType[*ForbiddenAddressError](err); ok || err == nil {
		t.Errorf("unguarded dial = %v, want no ForbiddenAddressError", err)
	}
}
