package config

import (
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agent-runner/agent-runner/internal/suggest"
)

// Defaults of the kind-specific keys.
const (
	defaultTwitchServer      = "irc.chat.twitch.tv:6697"
	defaultTwitchPlainServer = "irc.chat.twitch.tv:6667"
	defaultDiscordAPIURL     = "https://discord.com/api/v10/"
	defaultDiscordGateway    = "wss://gateway.discord.gg"
	defaultBlueskyHost       = "https://bsky.social"
	defaultBlueskyPoll       = 30 * time.Second
	minBlueskyPoll           = 5 * time.Second
	defaultProbeInterval     = 30 * time.Second
	defaultProbeGrace        = 30 * time.Second
)

// Reasons for disabling a listener whose credentials are not configured.
const (
	noDiscordToken       = "no token configured"
	noBlueskyCredentials = "no handle or app password configured"
)

// The patterns of listener fields and umask compile at their first use:
// their bounded repeats make large programs, together about 0.12 ms and
// 130 KB at every start of every command, and most configs use none.

// twitchNamePattern matches a Twitch login, which names both a user and
// their channel.
var twitchNamePattern = lazyPattern(`^[a-z0-9_]{1,25}$`)

// snowflakePattern matches a Discord ID, an unsigned 64-bit integer
// written in decimal.
var snowflakePattern = lazyPattern(`^[0-9]{1,20}$`)

// handlePattern matches a lowercase Bluesky handle, which is a domain name
// of at least two labels whose last label does not start with a digit.
var handlePattern = lazyPattern(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// lazyPattern returns a function that compiles expr at its first call.
func lazyPattern(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// maxHandleLength is the maximum length of a domain name, and so of a
// handle.
const maxHandleLength = 253

// blueskyReasons are the notification reasons a Bluesky listener can
// deliver. The first four are the default.
var blueskyReasons = []string{"mention", "reply", "quote", "follow", "like", "repost"}

var probeKeys = []string{"grace", "heartbeat", "http", "interval", "max_age"}

const probeExample = `{ http = "http://127.0.0.1:8080/health" }`

func (l *loader) decodeTwitch(t table, plan *listenerPlan) {
	twitch := &Twitch{TLS: true}
	plan.listener.Twitch = twitch
	if tls, ok := l.boolValue(t, "tls"); ok {
		twitch.TLS = tls
	}
	twitch.Server = defaultTwitchServer
	if !twitch.TLS {
		twitch.Server = defaultTwitchPlainServer
	}
	if server, ok := l.nonEmptyString(t, "server", `"irc.chat.twitch.tv:6697"`); ok && l.checkHostPort(t.key("server"), server) {
		twitch.Server = server
	}
	twitch.Channels = l.decodeTwitchChannels(t)
	if username, ok := l.nonEmptyString(t, "username", `"mybot"`); ok {
		twitch.Username = strings.ToLower(username)
		if !twitchNamePattern().MatchString(twitch.Username) {
			l.report(t.key("username"), `invalid Twitch username %q: use the bot's login of 1 to 25 letters, digits and "_", such as "mybot"`, username)
		}
	}
	if token, ok := l.decodeSecretKey(t, "token", `{ file = "secrets/twitch-token" }`); ok {
		plan.addSecret(token, &twitch.Token)
	}
	_, hasToken := t.values["token"]
	_, hasUsername := t.values["username"]
	if hasToken && !hasUsername {
		l.report(t.key("token"), `token is set but username is not: add username = "mybot" with the login the token belongs to`)
	}
}

// decodeTwitchChannels returns the channels in lowercase without a
// leading "#", since Twitch channel names ignore case.
func (l *loader) decodeTwitchChannels(t table) []string {
	path := t.key("channels")
	if _, ok := t.values["channels"]; !ok {
		l.report(t.path, `missing channels: add channels = ["mychannel"] to [%s]`, t.path)
		return nil
	}
	names, ok := l.stringList(t, "channels", `["mychannel"]`)
	if !ok {
		return nil
	}
	if len(names) == 0 {
		l.report(path, `must not be empty: list the channels to join, such as ["mychannel"]`)
		return nil
	}
	channels := make([]string, len(names))
	for i, name := range names {
		channels[i] = strings.ToLower(strings.TrimPrefix(name, "#"))
		if !twitchNamePattern().MatchString(channels[i]) {
			l.reportEntry(path, i, `invalid Twitch channel %q: use the channel's login of 1 to 25 letters, digits and "_", such as "mychannel"`, name)
		}
	}
	l.reportRepeats(path, channels)
	return channels
}

func (l *loader) decodeDiscord(t table, plan *listenerPlan) {
	discord := &Discord{APIURL: defaultDiscordAPIURL, GatewayURL: defaultDiscordGateway}
	plan.listener.Discord = discord
	if _, ok := t.values["token"]; !ok {
		plan.listener.disable(noDiscordToken)
	}
	if token, ok := l.decodeSecretKey(t, "token", `{ env = "DISCORD_TOKEN" }`); ok {
		plan.addSecret(token, &discord.Token)
	}
	if ids, ok := l.stringList(t, "channels", `["123456789012345678"]`); ok {
		for i, id := range ids {
			if !snowflakePattern().MatchString(id) {
				l.reportEntry(t.key("channels"), i, `invalid Discord channel ID %q: write the channel's numeric ID such as "123456789012345678", which Copy Channel ID in Discord's developer mode shows`, id)
			}
		}
		l.reportRepeats(t.key("channels"), ids)
		discord.Channels = ids
	}
	// Relative paths join onto the REST base URL, which keeps its last
	// segment, such as v10, only when it ends in "/".
	if api, ok := l.baseURLValue(t, "api_url", `"https://discord.com/api/v10/"`, "http", "https"); ok {
		discord.APIURL = strings.TrimSuffix(api, "/") + "/"
	}
	if gateway, ok := l.baseURLValue(t, "gateway_url", `"wss://gateway.discord.gg"`, "ws", "wss"); ok {
		discord.GatewayURL = gateway
	}
}

func (l *loader) decodeBluesky(t table, plan *listenerPlan) {
	bluesky := &Bluesky{
		Host:    defaultBlueskyHost,
		Poll:    defaultBlueskyPoll,
		Reasons: slices.Clone(blueskyReasons[:4]),
	}
	plan.listener.Bluesky = bluesky
	l.checkBlueskyCredentials(t, plan.listener)
	if handle, ok := l.nonEmptyString(t, "handle", `"bot.example.com"`); ok {
		bluesky.Handle = strings.ToLower(handle)
		l.checkHandle(t.key("handle"), handle)
	}
	if password, ok := l.decodeSecretKey(t, "password", `{ file = "secrets/bsky-app-password" }`); ok {
		plan.addSecret(password, &bluesky.Password)
	}
	if host, ok := l.baseURLValue(t, "host", `"https://bsky.social"`, "http", "https"); ok {
		bluesky.Host = strings.TrimSuffix(host, "/")
	}
	if poll, ok := l.durationValue(t, "poll", minBlueskyPoll); ok {
		bluesky.Poll = poll
	}
	if reasons, ok := l.decodeReasons(t); ok {
		bluesky.Reasons = reasons
	}
}

// checkBlueskyCredentials disables a listener that sets neither handle nor
// password, and reports one that sets only one of them.
func (l *loader) checkBlueskyCredentials(t table, listener *Listener) {
	_, hasHandle := t.values["handle"]
	_, hasPassword := t.values["password"]
	switch {
	case !hasHandle && !hasPassword:
		listener.disable(noBlueskyCredentials)
	case !hasPassword:
		l.report(t.key("handle"), `handle is set but password is not: add password = { file = "secrets/bsky-app-password" } with an app password, or remove handle to disable this listener`)
	case !hasHandle:
		l.report(t.key("password"), `password is set but handle is not: add handle = "bot.example.com", or remove password to disable this listener`)
	}
}

func (l *loader) checkHandle(path keyPath, handle string) {
	lower := strings.ToLower(handle)
	switch {
	case strings.HasPrefix(handle, "@"):
		l.report(path, `invalid handle %q: write it without the leading "@", such as %q`, handle, strings.TrimPrefix(lower, "@"))
	case len(lower) > maxHandleLength || !handlePattern().MatchString(lower):
		l.report(path, `invalid handle %q: write the account's domain name, such as "bot.example.com" or "name.bsky.social"`, handle)
	}
}

func (l *loader) decodeReasons(t table) ([]string, bool) {
	path := t.key("reasons")
	reasons, ok := l.stringList(t, "reasons", `["mention", "reply"]`)
	if !ok {
		return nil, false
	}
	if len(reasons) == 0 {
		l.report(path, `must not be empty: list the notification reasons to deliver, such as ["mention", "reply"], or remove the key for the default`)
		return nil, false
	}
	valid := true
	for i, reason := range reasons {
		if slices.Contains(blueskyReasons, reason) {
			continue
		}
		valid = false
		if guess := suggest.Closest(reason, blueskyReasons); guess != "" {
			l.reportEntry(path, i, "unknown reason %q, did you mean %q? Use mention, reply, quote, follow, like or repost", reason, guess)
		} else {
			l.reportEntry(path, i, "unknown reason %q: use mention, reply, quote, follow, like or repost", reason)
		}
	}
	l.reportRepeats(path, reasons)
	return reasons, valid
}

func (l *loader) decodeExec(t table, plan *listenerPlan, runner Runner) {
	exec := &Exec{StopGrace: runner.KillGrace}
	plan.listener.Exec = exec
	const example = `["python3", "server.py"]`
	if _, ok := t.values["command"]; !ok {
		l.report(t.path, "missing command: add command = %s to [%s]", example, t.path)
	}
	exec.Command = l.argvValue(t, "command", example)
	if len(exec.Command) > 0 {
		plan.addProgram(exec.Command[0], t.key("command"))
	}
	exec.Probe = l.decodeProbe(t)
	if grace, ok := l.durationValue(t, "stop_grace", 0); ok {
		exec.StopGrace = grace
	}
	plan.settings.limits = l.decodeLimitSettings(t).over(plan.settings.limits)
	exec.Limits = plan.settings.limits.limits()
}

// decodeProbe returns the probe table, or nil when there is none.
func (l *loader) decodeProbe(t table) *Probe {
	pt, ok := l.subTable(t, "probe", probeExample)
	if !ok {
		return nil
	}
	l.checkKeys(pt, "in a probe", probeKeys, nil)
	probe := &Probe{Interval: defaultProbeInterval, Grace: defaultProbeGrace}
	l.checkProbeShape(pt)
	if target, ok := l.urlValue(pt, "http", `"http://127.0.0.1:8080/health"`, "http", "https"); ok {
		probe.HTTP = target
	}
	if file, ok := l.nonEmptyString(pt, "heartbeat", `"var/heartbeat"`); ok {
		probe.Heartbeat = l.resolve(file)
	}
	if age, ok := l.durationValue(pt, "max_age", time.Second); ok {
		probe.MaxAge = age
	}
	if interval, ok := l.durationValue(pt, "interval", time.Second); ok {
		probe.Interval = interval
	}
	if grace, ok := l.durationValue(pt, "grace", 0); ok {
		probe.Grace = grace
	}
	return probe
}

// checkProbeShape reports a probe that does not set exactly one of http
// and heartbeat, and a max_age without heartbeat or the reverse.
func (l *loader) checkProbeShape(pt table) {
	_, hasHTTP := pt.values["http"]
	_, hasHeartbeat := pt.values["heartbeat"]
	_, hasMaxAge := pt.values["max_age"]
	switch {
	case hasHTTP && hasHeartbeat:
		l.report(pt.path, "probe sets http and heartbeat: keep one of them")
	case !hasHTTP && !hasHeartbeat:
		l.report(pt.path, `probe sets neither http nor heartbeat: add http = "http://127.0.0.1:8080/health" for a URL that must answer 2xx, or heartbeat = "var/heartbeat" with max_age = "2m" for a file the child touches`)
	}
	switch {
	case hasHeartbeat && !hasMaxAge:
		l.report(pt.path, `missing max_age: add max_age = "2m", the age at which the heartbeat file counts as stale`)
	case hasMaxAge && !hasHeartbeat:
		l.report(pt.key("max_age"), "max_age applies only to a heartbeat probe: remove it, or use heartbeat in place of http")
	}
}
