package health

import (
	"net"
	"net/http"
	"os"
	"strings"
)

// loopbackHostsOnly serves a request to a loopback listener only when its
// Host header names this machine: an IP address, localhost, a name under
// .localhost, or the machine's host name. Any web page a local browser
// opens can reach a loopback port, and one served from a domain whose
// DNS answer changes to 127.0.0.1 (DNS rebinding) could then read the
// status page and metrics as its own origin. Its requests carry that
// domain in Host, which this check rejects.
func loopbackHostsOnly(next http.Handler) http.Handler {
	hostname, _ := os.Hostname()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !localHost(r.Host, hostname) {
			http.Error(w, "unknown host: the status server responds only to requests for an IP address, localhost or this machine's name", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// localHost reports whether the Host header value host names this
// machine.
func localHost(host, hostname string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.ToLower(strings.Trim(name, "[]")), ".")
	switch {
	case name == "":
		// HTTP/1.0 requests may omit Host, and a browser always sends it.
		return true
	case net.ParseIP(name) != nil:
		return true
	case name == "localhost" || strings.HasSuffix(name, ".localhost"):
		return true
	}
	return hostname != "" && name == strings.ToLower(hostname)
}

// isLoopback reports whether addr, a listener's address, is a loopback
// address.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
