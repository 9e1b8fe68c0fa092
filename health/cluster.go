package health

import (
	"time"

	"github.com/agent-runner/agent-runner/control"
)

// addCluster adds the node's role and leader to the report of a cluster
// node. A standby is healthy while some node leads, and a cluster that
// etcd cannot tell a leader for is a problem on every node.
func addCluster(report *Report, c *control.ClusterStatus) {
	if c == nil {
		return
	}
	report.Role, report.Leader = c.Role, c.Leader
	switch {
	case c.Error != "":
		report.Problems = append(report.Problems, Problem{Kind: KindDaemon, Name: "cluster", State: "failed", Reason: firstLine(c.Error)})
	case c.Leader == "":
		report.Problems = append(report.Problems, Problem{Kind: KindDaemon, Name: "cluster", State: "failed", Reason: "no node leads the cluster"})
	}
	if c.Role == "standby" {
		report.Summary = "standby, leader " + c.Leader + "; " + report.Summary
	}
	if !c.ListenersWaitUntil.IsZero() {
		report.ListenersWaitUntil = c.ListenersWaitUntil
		report.Summary = "listeners wait for the handover until " + c.ListenersWaitUntil.UTC().Format(time.RFC3339) + "; " + report.Summary
	}
}
