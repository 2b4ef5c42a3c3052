package netutil

import "testing"

func TestIsLoopbackHost(t *testing.T) {
	for _, c := range []struct {
		host string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"localhost", true},
		{"127.evil.example", false},
		{"127.0.0.1.evil.example", false},
		{"localhost.evil.example", false},
		{"localhost.", false},
		{"LOCALHOST.evil", false},
		{"128.0.0.1", false},
		{"10.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"0.0.0.0", false},
		{"::", false},
		{"", false},
		{"127.1", false}, // inet_aton shorthand: not an IP literal to netip, refused
	} {
		if got := IsLoopbackHost(c.host); got != c.want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", c.host, got, c.want)
		}
	}
}

func TestIsLoopbackAddr(t *testing.T) {
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9750", true},
		{"[::1]:9750", true},
		{"localhost:0", true},
		{":9750", false},
		{"0.0.0.0:9750", false},
		{"127.evil.example:9750", false},
		{"127.0.0.1", false}, // no port
	} {
		if got := IsLoopbackAddr(c.addr); got != c.want {
			t.Errorf("IsLoopbackAddr(%q) = %v, want %v", c.addr, got, c.want)
		}
	}
}
