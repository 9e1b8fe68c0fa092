package bench

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/state"
)

// WriteScaleConfig writes dir/config.toml with jobs jobs that run true
// once a minute. Even-numbered jobs have cron schedules spread over the
// minute's 60 seconds. Odd-numbered ones run every minute from when the
// store first saw them, so about half the jobs fire in the same few
// seconds, a minute after the daemon's first start.
func WriteScaleConfig(dir string, jobs int) (string, error) {
	var b strings.Builder
	b.WriteString("[runner]\nstate_dir = \"state\"\n\n")
	for i := range jobs {
		fmt.Fprintf(&b, "[jobs.job-%05d]\ncommand = [\"true\"]\n", i)
		if i%2 == 0 {
			fmt.Fprintf(&b, "schedule = \"%d * * * * *\"\n\n", (i/2)%60)
		} else {
			b.WriteString("every = \"1m\"\n\n")
		}
	}
	return writeConfig(dir, b.String())
}

// IdlePeers are the local servers the idle figure's listeners connect to.
type IdlePeers struct {
	// IRCAddr is the host:port of a Twitch chat server in plain TCP.
	IRCAddr string
	// DiscordAPI and DiscordGateway are the Discord listener's api_url
	// and gateway_url, and DiscordToken the token the gateway accepts.
	DiscordAPI, DiscordGateway, DiscordToken string
	// PDSURL is the Bluesky listener's host, and PDSPassword the
	// password it accepts.
	PDSURL, PDSPassword string
}

// WriteIdleConfig writes dir/config.toml with jobs jobs of which none is
// due within a day of the store first seeing them, and a Twitch, a
// Discord and a Bluesky listener connected to peers. The secrets go to
// files in dir.
func WriteIdleConfig(dir string, jobs int, peers IdlePeers) (string, error) {
	secrets := map[string]string{"discord-token": peers.DiscordToken, "pds-password": peers.PDSPassword}
	for name, value := range secrets {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(value+"\n"), 0o600); err != nil {
			return "", err
		}
	}
	var b strings.Builder
	b.WriteString("[runner]\nstate_dir = \"state\"\n\n")
	for i := range jobs {
		fmt.Fprintf(&b, "[jobs.idle-%02d]\ncommand = [\"true\"]\n", i)
		if i%2 == 0 {
			b.WriteString("every = \"24h\"\n\n")
		} else {
			// Midnight on January 1st, UTC.
			b.WriteString("schedule = \"0 0 1 1 *\"\n\n")
		}
	}
	fmt.Fprintf(&b, `[listeners.chat]
kind = "twitch"
server = %q
tls = false
channels = ["idle"]

[listeners.discord]
kind = "discord"
api_url = %q
gateway_url = %q
token = { file = "discord-token" }

[listeners.mentions]
kind = "bluesky"
handle = "bench.test"
host = %q
password = { file = "pds-password" }
`, peers.IRCAddr, peers.DiscordAPI, peers.DiscordGateway, peers.PDSURL)
	return writeConfig(dir, b.String())
}

// StormOptions describes the catch-up storm: Jobs every-24h jobs whose
// newest missed slot is due when the daemon starts.
type StormOptions struct {
	Jobs          int
	Spread        time.Duration
	MaxConcurrent int
	// Sleep is how long each catch-up run's child sleeps.
	Sleep time.Duration
	// Outage is how long before the start the jobs last ran.
	Outage time.Duration
}

// StormJobName returns the name of storm job i.
func StormJobName(i int) string { return fmt.Sprintf("storm-%04d", i) }

// WriteStormConfig writes dir/config.toml for the storm.
func WriteStormConfig(dir string, opts StormOptions) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "[runner]\nstate_dir = \"state\"\ncatch_up_spread = \"%s\"\nmax_concurrent = %d\n\n", opts.Spread, opts.MaxConcurrent)
	for i := range opts.Jobs {
		fmt.Fprintf(&b, "[jobs.%s]\ncommand = [\"sleep\", \"%g\"]\nevery = \"24h\"\n\n", StormJobName(i), opts.Sleep.Seconds())
	}
	return writeConfig(dir, b.String())
}

// SeedStorm writes the store of the storm config in dir. Each job was
// first seen a day before the outage and last ran when the outage began.
// The daily slots of the outage are missed, and the newest is due at now.
func SeedStorm(dir string, opts StormOptions, now time.Time) error {
	store, err := state.Open(filepath.Join(dir, "state", "state.db"), state.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer store.Close()
	firstSeen := now.Add(-opts.Outage - 24*time.Hour)
	lastSlot := firstSeen.Truncate(time.Second).Add(24 * time.Hour)
	for i := range opts.Jobs {
		name := StormJobName(i)
		if _, err := store.EnsureJob(name, firstSeen); err != nil {
			return err
		}
		run, err := store.Claim(state.Run{Job: name, Trigger: state.TriggerSchedule, Slot: lastSlot, Start: lastSlot}, lastSlot.Add(24*time.Hour))
		if err != nil {
			return err
		}
		run.Result = state.ResultOK
		run.Finish = lastSlot.Add(opts.Sleep)
		run.Duration = opts.Sleep
		if err := store.Finish(run); err != nil {
			return err
		}
	}
	return nil
}

// CopyShippedConfig copies config.toml and scripts/ of the repository
// at repo into dir and returns the path of the copy. The copy's state
// folder is then inside dir, because config.toml names it relative to
// itself.
func CopyShippedConfig(repo, dir string) (string, error) {
	if err := copyFile(filepath.Join(repo, "config.toml"), filepath.Join(dir, "config.toml")); err != nil {
		return "", err
	}
	scripts := filepath.Join(repo, "scripts")
	err := filepath.WalkDir(scripts, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repo, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dir, rel)
		if entry.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		return copyFile(path, target)
	})
	if err != nil {
		return "", fmt.Errorf("copy %s: %w", scripts, err)
	}
	return filepath.Join(dir, "config.toml"), nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	info, err := os.Stat(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, info.Mode().Perm())
}

func writeConfig(dir, text string) (string, error) {
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return "", err
	}
	return path, nil
}
