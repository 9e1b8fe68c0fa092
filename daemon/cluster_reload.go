package daemon

import (
	"fmt"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// Reload re-reads the config file. Every node keeps the new config for
// its next terms, and the leader applies it to the current term as a
// diff, as a single node does. [cluster] itself changes only with a
// restart.
func (n *clusterNode) Reload() (string, error) {
	n.reloadLock.Lock()
	defer n.reloadLock.Unlock()
	return n.reload("")
}

// reloadIfChanged reloads when fileChanged, under the reload lock.
func (n *clusterNode) reloadIfChanged() {
	n.reloadLock.Lock()
	defer n.reloadLock.Unlock()
	if hash, changed := n.fileChanged(); changed {
		_, _ = n.reload(hash)
	}
}

// reload is Reload under the reload lock. A reload by watch passes the
// fingerprint that two checks saw as seen, and applies nothing when the
// files it reads differ from it.
func (n *clusterNode) reload(seen string) (string, error) {
	old := n.config()
	if n.stopping() {
		n.log.Info("reload ignored because the daemon is stopping", "config", old.Path)
		return "", errStopping
	}
	notify(n.log, "RELOADING=1")
	defer notify(n.log, "READY=1")

	n.log.Info("reloading config", "config", old.Path)
	next, err := loadConfig(old.Path)
	if read, changed := changedDuringRead(seen, next, err, old.Path); changed {
		n.log.Info("config files changed while they were read, so the reload waits for the next check", "config", old.Path)
		n.mu.Lock()
		n.unsettled(read)
		n.mu.Unlock()
		return "", nil
	}
	if err != nil {
		n.log.Error("reload rejected: the running config stays", "config", old.Path, "err", err)
		hash := filesFingerprint(old.Path)
		n.mu.Lock()
		n.info.ReloadError, n.info.ReloadFailedAt = err.Error(), time.Now().UTC()
		n.rejected(hash)
		n.mu.Unlock()
		return "", fmt.Errorf("reload rejected, the running config stays: %w", err)
	}
	restartOnly := keepRestartOnly(old, next, n.log)
	applied := runnerChanges(old, next)
	if !sameCluster(old.Cluster, next.Cluster) {
		n.log.Warn("config change takes effect after a restart", "key", "cluster")
		restartOnly = append(restartOnly, "cluster")
	}
	next.Cluster = old.Cluster
	logJobProblems(next, n.log)

	summary := jobChanges(old, next)
	var applyErr error
	if work := n.current(); work != nil {
		var changes string
		changes, applyErr = n.applyToTerm(work, next)
		summary += "; " + changes
	}
	summary += appliedNote(applied) + restartNote(restartOnly)
	n.mu.Lock()
	n.cfg = next
	n.info.ConfigHash, n.info.LoadedAt, n.info.ReloadError = next.Hash, time.Now().UTC(), ""
	n.reloaded()
	n.mu.Unlock()
	n.loaded()
	n.log.Info("config reloaded", "changes", summary, "hash", next.Hash[:12])
	return summary, applyErr
}

// applyToTerm applies a reloaded config to the leader's scheduler,
// runner and listeners. The scheduler's copy of the positions is first
// brought up to etcd, and jobs new to etcd are created there, so that
// an added every-job is anchored at the same instant on every node.
func (n *clusterNode) applyToTerm(work *termWork, next *config.Config) (string, error) {
	now := n.opts.Clock.Now()
	for _, job := range next.Jobs {
		if !job.Enabled {
			continue
		}
		st, err := n.store.EnsureJob(job.Name, now)
		if err == nil {
			err = copyPosition(work.positions, st, now)
		}
		if err != nil {
			n.log.Error("copy job position from etcd failed", "job", job.Name, "err", err)
		}
	}
	work.runner.SetJobs(next)
	err := work.sched.Apply(next)
	if err != nil {
		n.log.Error("apply reloaded jobs failed", "err", err)
	}
	return work.set.apply(next, n.store, n.reaper, n.log), err
}

// sameCluster reports whether two [cluster] tables are the same.
func sameCluster(a, b *config.Cluster) bool {
	if a == nil || b == nil {
		return a == b
	}
	return fmt.Sprint(a.Endpoints) == fmt.Sprint(b.Endpoints) && a.Node == b.Node && a.LeaseTTL == b.LeaseTTL && a.ListenerHandover == b.ListenerHandover &&
		a.Prefix == b.Prefix && a.CAFile == b.CAFile && a.CertFile == b.CertFile && a.KeyFile == b.KeyFile &&
		a.Username == b.Username && revealed(a.Password) == revealed(b.Password)
}

func revealed(secret *config.Secret) string {
	if secret == nil {
		return ""
	}
	return secret.Reveal()
}

func (n *clusterNode) watching() bool { return n.config().Runner.Watch }

// fileChanged reports, with watch = true, whether the config files'
// content differs from the last one loaded or rejected.
func (n *clusterNode) fileChanged() (string, bool) {
	cfg := n.config()
	if !cfg.Runner.Watch {
		return "", false
	}
	hash := filesFingerprint(cfg.Path)
	n.mu.Lock()
	verdict := n.watchState.compare(hash, &n.info)
	n.mu.Unlock()
	if verdict == watchReverted {
		n.log.Info("config files match the running config again; the reload error is cleared", "config", cfg.Path)
	}
	return hash, verdict == watchChanged
}
