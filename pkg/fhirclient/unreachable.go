package fhirclient

import (
	"errors"
	"net"
	"net/url"
	"syscall"
)

// UnreachableError is a server that could not be reached at all, before any server answered the
// Client (Options.FailFast): "cannot connect to 127.0.0.1:1: connection refused".
type UnreachableError struct {
	Addr string // host:port
	Err  error  // the refusal (a syscall.Errno) or the *net.DNSError
}

func (e *UnreachableError) Error() string {
	reason := e.Err.Error()
	if dns, ok := errors.AsType[*net.DNSError](e.Err); ok && dns.IsNotFound {
		reason = "no such host"
	}
	return "cannot connect to " + e.Addr + ": " + reason + " — is the URL right?"
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// unreachable returns an *UnreachableError when err says the server cannot be reached at all
// (refused, no route, unknown name), else nil. Timeouts are not in the list: a slow network or
// a server starting up looks the same, and deserves the retries.
func unreachable(x *exchange, target *url.URL, err error) error {
	u := target
	if last, _, _ := x.hop(); last != nil {
		u = last
	}
	addr := u.Host
	if u.Port() == "" {
		port := "443"
		if u.Scheme == "http" {
			port = "80"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	if dns, ok := errors.AsType[*net.DNSError](err); ok && dns.IsNotFound {
		return &UnreachableError{Addr: addr, Err: dns}
	}
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		if errors.Is(err, errno) {
			return &UnreachableError{Addr: addr, Err: errno}
		}
	}
	return nil
}
