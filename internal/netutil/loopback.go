// Package netutil holds small network checks shared by the commands and the shipper.
package netutil

import (
	"net"
	"net/netip"
)

// IsLoopbackHost reports whether host names this machine without any lookup: an IP literal
// in 127.0.0.0/8 (also IPv4-mapped) or ::1, or the name "localhost" exactly. Any other name
// is refused, since DNS could point it anywhere ("127.evil.example").
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// IsLoopbackAddr is IsLoopbackHost for a "host:port" listen or dial address; an empty host
// (all interfaces) is not loopback.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && IsLoopbackHost(host)
}
