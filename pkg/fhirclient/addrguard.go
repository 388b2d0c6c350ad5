package fhirclient

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
)

// ForbiddenAddressError is a connection refused because a URL taken from data (an attachment's
// url; Request.Guard) would reach a link-local address or a cloud metadata endpoint: a data file
// must not make the tool read the machine's cloud credentials and store them in its output
// (issue 11.14). The address is checked when the connection is made, after name resolution,
// so a host name that resolves there (or is re-pointed there between two lookups) is refused too.
type ForbiddenAddressError struct {
	Host string     // the host name refused by name, or "" when refused by address
	Addr netip.Addr // the address refused; invalid when refused by name
}

func (e *ForbiddenAddressError) Error() string {
	if e.Host != "" {
		return fmt.Sprintf("%s is a cloud metadata host name: refused for a URL taken from data", e.Host)
	}
	return fmt.Sprintf("%s is a link-local address, where cloud metadata services answer: refused for a URL taken from data", e.Addr)
}

// metadataAddrs are metadata endpoints outside the link-local ranges: AWS's IPv6 one and
// Alibaba Cloud's.
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("fd00:ec2::254"):   true,
	netip.MustParseAddr("100.100.100.200"): true,
}

// metadataHosts are the names cloud providers give their metadata services; they resolve to
// link-local addresses inside the cloud, but are refused by name too, so that a proxy, which
// resolves names itself, does not let them through.
var metadataHosts = map[string]bool{
	"metadata":                   true, // GCP's short name
	"metadata.google.internal":   true,
	"metadata.goog":              true,
	"instance-data":              true, // AWS
	"instance-data.ec2.internal": true,
}

// ForbiddenAddress reports an address that Request.Guard refuses: IPv4 169.254.0.0/16 and IPv6
// fe80::/10 (link-local, where AWS, GCP, Azure and OpenStack serve instance metadata and
// credentials), link-local multicast, and the metadata endpoints elsewhere (fd00:ec2::254,
// 100.100.100.200). Loopback and private ranges are allowed: FHIR servers live there.
func ForbiddenAddress(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	return a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || metadataAddrs[a]
}

// checkGuardedHost refuses a guarded hop by its URL's host, before any dial: a metadata host
// name, or an address literal ForbiddenAddress refuses (also caught at dial time, but not when a
// proxy dials).
func checkGuardedHost(host string) error {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if metadataHosts[h] {
		return &ForbiddenAddressError{Host: h}
	}
	if a, err := netip.ParseAddr(h); err == nil && ForbiddenAddress(a) {
		return &ForbiddenAddressError{Addr: a.Unmap().WithZone("")}
	}
	return nil
}

// guardControl is the default dialer's ControlContext: it runs for each address a connection
// is attempted to, after resolution, and refuses forbidden ones when the request that asked for
// the connection is guarded. The dial context carries the request's values (net/http dials with
// context.WithoutCancel of the request's context), so the exchange is found there.
func guardControl(ctx context.Context, _, address string, _ syscall.RawConn) error {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	if x == nil || !x.guard {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil // not an IP address (a Unix socket): nothing to check
	}
	if a := ap.Addr(); ForbiddenAddress(a) {
		return &ForbiddenAddressError{Addr: a.Unmap().WithZone("")}
	}
	return nil
}
