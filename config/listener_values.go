package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// decodeSecretKey reads a token or password. It must be a secret
// reference, because a secret written inline would live in the config
// file. It returns false when the key is absent or invalid.
func (l *loader) decodeSecretKey(t table, name, example string) (envValue, bool) {
	path := t.key(name)
	switch value := t.values[name].(type) {
	case nil:
		return envValue{}, false
	case map[string]any:
		return l.decodeSecretReference(table{path: path, values: value})
	case string:
		l.report(path, "must be a secret reference such as %s, not a string: keep secrets out of the config file and write the value to that file, or use { env = \"NAME\" } or { credential = \"NAME\" }", example)
	default:
		l.report(path, "must be a secret reference such as %s, not %s", example, typeName(value))
	}
	return envValue{}, false
}

// addSecret adds a secret to read into target once the whole file is
// valid.
func (plan *listenerPlan) addSecret(value envValue, target **Secret) {
	plan.secrets = append(plan.secrets, secretPlan{value: value, target: target})
}

// urlValue returns the URL at name when it is absolute, has a host and
// uses one of schemes.
func (r *reporter) urlValue(t table, name, example string, schemes ...string) (string, bool) {
	text, ok := r.nonEmptyString(t, name, example)
	if !ok {
		return "", false
	}
	// url.Parse lowercases the scheme.
	parsed, err := url.Parse(text)
	if err != nil || parsed.Host == "" || !slices.Contains(schemes, parsed.Scheme) {
		r.report(t.key(name), "invalid URL %q: write an absolute %s URL such as %s", text, strings.Join(schemes, " or "), example)
		return "", false
	}
	return text, true
}

// baseURLValue is urlValue for a URL that clients extend with paths or
// query parameters, which therefore must have no query or fragment.
func (r *reporter) baseURLValue(t table, name, example string, schemes ...string) (string, bool) {
	text, ok := r.urlValue(t, name, example, schemes...)
	if !ok {
		return "", false
	}
	parsed, _ := url.Parse(text)
	if parsed.RawQuery != "" || parsed.Fragment != "" || strings.HasSuffix(text, "?") || strings.HasSuffix(text, "#") {
		r.report(t.key(name), "invalid URL %q: remove the query or fragment, because clients append paths and parameters to the URL", text)
		return "", false
	}
	return text, true
}

// checkHostPort reports a server address that is not host:port with a
// port from 1 to 65535.
func (r *reporter) checkHostPort(path keyPath, server string) bool {
	host, port, err := net.SplitHostPort(server)
	number, portErr := strconv.ParseUint(port, 10, 16)
	if err != nil || portErr != nil || host == "" || number == 0 {
		r.report(path, `invalid server %q: write host:port such as "irc.chat.twitch.tv:6697"`, server)
		return false
	}
	return true
}

// reportRepeats reports each entry of the array at path that equals an
// earlier entry.
func (r *reporter) reportRepeats(path keyPath, list []string) {
	for i, item := range list {
		if slices.Contains(list[:i], item) {
			r.reportEntry(path, i, "entry %d repeats %q: remove it", i+1, item)
		}
	}
}

// replyPlaceholders are the names a chat command's reply may use in
// braces.
var replyPlaceholders = []string{"user", "channel", "text", "args", "uptime", "listener"}

const (
	defaultCooldown    = 10 * time.Second
	chatCommandExample = `[listeners.NAME.commands."!uptime"]`
	replyExample       = `"{user}: up for {uptime}"`
)

// decodeChatCommands returns the commands table in trigger order.
func (l *loader) decodeChatCommands(t table) []ChatCommand {
	commands, ok := l.subTable(t, "commands", chatCommandExample)
	if !ok {
		return nil
	}
	var list []ChatCommand
	for _, trigger := range commands.names() {
		if ct, ok := l.subTable(commands, trigger, chatCommandExample); ok {
			list = append(list, l.decodeChatCommand(ct, trigger))
		}
	}
	return list
}

func (l *loader) decodeChatCommand(ct table, trigger string) ChatCommand {
	l.checkKeys(ct, "in ["+ct.path.String()+"]", []string{"cooldown", "reply"}, nil)
	command := ChatCommand{Trigger: trigger, Cooldown: defaultCooldown}
	if trigger == "" || strings.ContainsFunc(trigger, unicode.IsSpace) {
		l.report(ct.path, `invalid trigger %q: write one word without spaces that starts a chat message, such as "!uptime"`, trigger)
	}
	if _, ok := ct.values["reply"]; !ok {
		l.report(ct.path, "missing reply: add reply = %s to [%s]", replyExample, ct.path)
	}
	if reply, ok := l.nonEmptyString(ct, "reply", replyExample); ok {
		if err := checkReply(reply); err != nil {
			l.report(ct.key("reply"), "%v", err)
		}
		command.Reply = reply
	}
	if cooldown, ok := l.durationValue(ct, "cooldown", 0); ok {
		command.Cooldown = cooldown
	}
	return command
}

// checkReply returns an error for the first brace in reply that is not
// part of a placeholder from replyPlaceholders. Replies have no escape for
// a literal brace.
func checkReply(reply string) error {
	rest := reply
	for {
		start := strings.IndexAny(rest, "{}")
		if start < 0 {
			return nil
		}
		if rest[start] == '}' {
			return fmt.Errorf(`reply has a "}" without a matching "{": %s`, placeholderHint())
		}
		length := strings.IndexAny(rest[start+1:], "{}")
		if length < 0 || rest[start+1+length] == '{' {
			return fmt.Errorf(`reply has a "{" without a matching "}": %s`, placeholderHint())
		}
		name := rest[start+1 : start+1+length]
		if !slices.Contains(replyPlaceholders, name) {
			return fmt.Errorf("unknown placeholder {%s} in reply: %s", name, placeholderHint())
		}
		rest = rest[start+1+length+1:]
	}
}

func placeholderHint() string {
	names := make([]string, len(replyPlaceholders))
	for i, name := range replyPlaceholders {
		names[i] = "{" + name + "}"
	}
	return "the placeholders allowed are " + strings.Join(names, ", ") + ", and braces cannot appear otherwise"
}
