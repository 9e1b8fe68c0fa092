// Command libfloor is the baseline of the startup and idle figures: a
// program that links the libraries agent-runner is built on, the
// functions of them that agent-runner calls, and nothing of agent-runner
// itself. It sends READY=1 to NOTIFY_SOCKET as soon as main runs and then
// waits for SIGTERM, so its start time and resident set are what the
// libraries cost before agent-runner does anything.
//
// It accepts and ignores agent-runner's arguments, so the harness starts
// it as it starts the daemon.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/bluesky-social/indigo/atproto/atclient"
	"github.com/bwmarrin/discordgo"
	sd "github.com/coreos/go-systemd/v22/daemon"
	irc "github.com/gempir/go-twitch-irc/v4"
	"github.com/go-co-op/gocron/v2"
	"github.com/oklog/run"
	"github.com/pelletier/go-toml/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// linked holds the library functions agent-runner calls, so that the
// linker keeps them and what they reach, as it does in agent-runner.
// Blank imports alone would keep little more than package init.
var linked = []any{
	atclient.NewAPIClient, atclient.ResumePasswordSession, atclient.NewAPIRequest,
	discordgo.New, irc.NewClient, irc.NewAnonymousClient, irc.ParseMessage,
	gocron.NewScheduler, gocron.CronJob, (*run.Group).Run,
	toml.Unmarshal, toml.NewDecoder, prometheus.NewRegistry, promhttp.HandlerFor,
	bolt.Open, clientv3.New, concurrency.NewSession, concurrency.NewElection,
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "functions" {
		fmt.Println(len(linked), "library functions linked")
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if _, err := sd.SdNotify(false, sd.SdNotifyReady); err != nil {
		fmt.Fprintln(os.Stderr, "libfloor: notify:", err)
		os.Exit(1)
	}
	<-stop
}
