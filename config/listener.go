package config

import "time"

// Listener kinds.
const (
	KindTwitch  = "twitch"
	KindDiscord = "discord"
	KindBluesky = "bluesky"
	KindExec    = "exec"
)

// Listener is one [listeners.NAME] table: a persistent connection or a
// supervised long-running child.
type Listener struct {
	Name string
	// Kind is one of KindTwitch, KindDiscord, KindBluesky and KindExec,
	// and exactly the matching one of Twitch, Discord, Bluesky and Exec
	// is set.
	Kind        string
	Description string
	// Enabled is false when the file says enabled = false, and also when
	// the kind's credentials are not configured at all (Discord without a
	// token, Bluesky without a handle or password): such a listener is
	// shown as disabled, not as an error. Twitch without a token runs
	// anonymously, read-only.
	Enabled bool
	// DisabledReason is the reason Enabled is false: "enabled = false in
	// the config", "no token configured" or "no handle or app password
	// configured". It is "" when Enabled is true.
	DisabledReason string
	// Line is the line of the listener's table header.
	Line int
	// Problem is set when the listener is valid TOML but cannot run on
	// this machine, such as a configured secret that cannot be read or a
	// hook command not on PATH. check fails on it; run marks only this
	// listener failed.
	Problem error

	Twitch  *Twitch
	Discord *Discord
	Bluesky *Bluesky
	Exec    *Exec

	// Commands are built-in chat commands (twitch and discord only).
	Commands []ChatCommand
	// OnEvent is the argv of a hook that gets each event as one JSON
	// object on stdin; nil when there is none.
	OnEvent []string
	// HookTimeout bounds one hook run; default 30s.
	HookTimeout time.Duration
	// HookConcurrency caps hook runs at once; default 2.
	HookConcurrency int
	// HookQueue caps events waiting for a hook; default 100. Events past
	// it are dropped and counted.
	HookQueue int
	// LogTo is an absolute path of a JSONL file every event is appended
	// to, or "".
	LogTo string
	// LogMaxBytes rotates LogTo once it grows past this size; default
	// 64 MiB.
	LogMaxBytes int64
	// StaleAfter marks a running listener stale when its last event, or
	// its connection when no event came yet, is older than this; 0 turns
	// the check off.
	StaleAfter time.Duration

	// The process settings of hooks and of an exec listener's child,
	// with the same rules and defaults as jobs. [defaults] applies only
	// these four keys to listeners. WorkingDir and EnvFile are absolute,
	// and Env holds the resolved variables.
	WorkingDir string
	Env        map[string]Secret
	EnvFile    string
	InheritEnv []string
}

// Twitch configures a Twitch chat connection.
type Twitch struct {
	// Server is host:port; default irc.chat.twitch.tv:6697, or port 6667
	// when TLS is false.
	Server string
	// TLS defaults to true.
	TLS bool
	// Channels are lowercase channel names without the leading "#".
	Channels []string
	// Username is the bot's lowercase login. A token requires it, and
	// without a token the connection is anonymous even when it is set.
	Username string
	// Token is the OAuth token, nil for anonymous read-only access. It is
	// also nil when the configured token cannot be read, and
	// Listener.Problem contains the reason then.
	Token *Secret
}

// Discord configures a Discord bot connection.
type Discord struct {
	// Token is the bot token. It is nil when no token is configured, and
	// the listener is disabled then. It is also nil when the configured
	// token cannot be read, and Listener.Problem contains the reason then.
	Token *Secret
	// Channels are the channel IDs to listen in; empty means every
	// channel the bot can see.
	Channels []string
	// APIURL is the REST base URL, always ending in "/"; default
	// https://discord.com/api/v10/.
	APIURL string
	// GatewayURL is the websocket URL; default wss://gateway.discord.gg.
	GatewayURL string
}

// Bluesky configures a Bluesky account's notification poller.
type Bluesky struct {
	// Handle is the account's lowercase handle, such as bot.example.com,
	// or "" when the listener is disabled for lack of credentials.
	Handle string
	// Password is an app password. Like Twitch.Token, it is nil when it is
	// not configured or cannot be read.
	Password *Secret
	// Host is the PDS or entryway URL without a trailing "/"; default
	// https://bsky.social.
	Host string
	// Poll is the interval between listNotifications calls; default 30s,
	// at least 5s.
	Poll time.Duration
	// Reasons are the notification reasons delivered as events; default
	// mention, reply, quote and follow.
	Reasons []string
}

// Exec configures a supervised long-running child process.
type Exec struct {
	// Command is the argv of the child; no shell is involved.
	Command []string
	// Probe restarts the child when it fails; nil means none.
	Probe *Probe
	// StopGrace is the time between SIGTERM and SIGKILL on stop; default
	// the runner's kill_grace.
	StopGrace time.Duration
	// Identity and Limits apply to the child as they do to a job's, but
	// not to the listener's hooks.
	Identity Identity
	Limits   Limits
}

// Probe checks that an exec listener's child is alive. Exactly one of
// HTTP and Heartbeat is set.
type Probe struct {
	// HTTP is a URL that must answer 2xx.
	HTTP string
	// Heartbeat is an absolute path of a file the child touches; it fails
	// when older than MaxAge.
	Heartbeat string
	// MaxAge is set with Heartbeat and 0 with HTTP.
	MaxAge time.Duration
	// Interval between checks; default 30s.
	Interval time.Duration
	// Grace is how long after start failures are ignored; default 30s.
	Grace time.Duration
}

// ChatCommand is a built-in reply to a chat message that starts with
// Trigger, such as "!uptime".
type ChatCommand struct {
	Trigger string
	// Reply is a template whose only expansions are the placeholders
	// {user}, {channel}, {text}, {args}, {uptime} and {listener}. It has
	// no other braces.
	Reply string
	// Cooldown is the minimum time between two replies to this command in
	// one channel; default 10s.
	Cooldown time.Duration
}
