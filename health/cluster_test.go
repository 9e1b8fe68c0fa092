package health

import (
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/control"
)

func TestEvaluateClusterStandby(t *testing.T) {
	status := control.Status{Cluster: &control.ClusterStatus{Node: "b", Role: "standby", Leader: "a"}}
	report := Evaluate(status, time.Now())
	if !report.Healthy() {
		t.Errorf("status: got %s with %+v, want ok", report.Status, report.Problems)
	}
	if report.Role != "standby" || report.Leader != "a" {
		t.Errorf("role and leader: got %q and %q, want standby and a", report.Role, report.Leader)
	}
	if !strings.HasPrefix(report.Summary, "standby, leader a; ") {
		t.Errorf("summary: got %q, want it to start with the role", report.Summary)
	}
}

func TestEvaluateClusterWithoutLeader(t *testing.T) {
	for name, c := range map[string]*control.ClusterStatus{
		"no leader":   {Node: "b", Role: "standby"},
		"etcd failed": {Node: "b", Role: "standby", Error: "read cluster leader: context deadline exceeded"},
	} {
		t.Run(name, func(t *testing.T) {
			report := Evaluate(control.Status{Cluster: c}, time.Now())
			if report.Healthy() || len(report.Problems) != 1 || report.Problems[0].Name != "cluster" {
				t.Errorf("got %s with %+v, want one cluster problem", report.Status, report.Problems)
			}
		})
	}
}

func TestEvaluateWithoutClusterHasNoRole(t *testing.T) {
	report := Evaluate(control.Status{}, time.Now())
	if report.Role != "" || report.Leader != "" {
		t.Errorf("got role %q and leader %q, want none without [cluster]", report.Role, report.Leader)
	}
}
