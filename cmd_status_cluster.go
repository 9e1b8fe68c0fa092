package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/control"
)

// printCluster prints this node's role, the leader with its term and
// lease, and the members, for a daemon running with [cluster].
func printCluster(w io.Writer, c *control.ClusterStatus, now time.Time) {
	if c == nil {
		return
	}
	fmt.Fprintf(w, "cluster node %s: %s", c.Node, c.Role)
	switch {
	case c.Leader != "":
		fmt.Fprintf(w, "; leader %s since %s, term %d, lease renewed %s ago (TTL %s)",
			c.Leader, formatTime(c.LeaderSince, now), c.Term, c.LeaseAge, c.LeaseTTL)
	case c.Error == "":
		fmt.Fprint(w, "; no leader right now")
	}
	fmt.Fprintln(w)
	if !c.ListenersWaitUntil.IsZero() {
		fmt.Fprintf(w, "listeners wait for the handover until %s, because the previous leader did not resign\n", formatTime(c.ListenersWaitUntil, now))
	}
	names := make([]string, len(c.Members))
	for i, m := range c.Members {
		names[i] = m.Node
	}
	fmt.Fprintf(w, "members: %s\n", strings.Join(names, ", "))
	if c.Error != "" {
		fmt.Fprintf(w, "cluster status incomplete: %s\n", c.Error)
	}
}
