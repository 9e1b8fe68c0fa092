package alerts

import (
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxContentUnits is Discord's limit on a message's content. Lengths are
// counted in UTF-16 code units, which is never less than the number of
// characters, so a message within it is within Discord's limit.
const maxContentUnits = 2000

const (
	codeFenceOpen  = "\n```\n"
	codeFenceClose = "\n```"
	ellipsis       = "…"
)

// discordContent formats a as a Discord message: the headline, run facts,
// suppressed repeats and detail, then, only when includeOutput is set, the
// tail of the output in a code block. The headline part gets at most half
// of the limit when output follows.
func discordContent(a Alert, includeOutput bool) string {
	text := alertText(a)
	output := strings.TrimRight(a.Output, "\n")
	if !includeOutput || strings.TrimSpace(output) == "" {
		return truncateUnits(text, maxContentUnits)
	}
	text = truncateUnits(text, maxContentUnits/2)
	room := maxContentUnits - utf16Len(text) - len(codeFenceOpen) - len(codeFenceClose)
	return text + codeFenceOpen + keepTailUnits(escapeBackticks(output), room) + codeFenceClose
}

// alertText is the part of a message that every alert has.
func alertText(a Alert) string {
	icon := "🚨"
	if a.Event == EventRecovered {
		icon = "✅"
	}
	subject := a.Kind
	if a.Name != "" {
		subject += " " + a.Name
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s **%s**: %s", icon, subject, a.Event)
	if a.Summary != "" {
		b.WriteString(" — " + a.Summary)
	}
	if facts := alertFacts(a); facts != "" {
		b.WriteString("\n" + facts)
	}
	if a.Suppressed > 0 {
		fmt.Fprintf(&b, "\n%d more %q alerts for %s were suppressed during the cooldown.", a.Suppressed, a.Event, subject)
	}
	if a.Detail != "" {
		b.WriteString("\n" + a.Detail)
	}
	return b.String()
}

// alertFacts is the line with the run ID, exit code and time, using
// Discord's <t:SECONDS:f> timestamp, which each reader sees in their own
// time zone.
func alertFacts(a Alert) string {
	var facts []string
	if a.RunID != "" {
		facts = append(facts, "run "+a.RunID)
	}
	// A negative code is a run that never started or whose end is unknown.
	if a.ExitCode > 0 {
		facts = append(facts, fmt.Sprintf("exit code %d", a.ExitCode))
	}
	if !a.Time.IsZero() {
		facts = append(facts, fmt.Sprintf("<t:%d:f>", a.Time.Unix()))
	}
	return strings.Join(facts, " · ")
}

// escapeBackticks puts a zero-width space after every backtick, so no
// three backticks in the output can close the code block early.
func escapeBackticks(s string) string {
	return strings.ReplaceAll(s, "`", "`\u200b")
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// truncateUnits cuts s to at most limit UTF-16 code units, ending with an
// ellipsis when it cut anything.
func truncateUnits(s string, limit int) string {
	if utf16Len(s) <= limit {
		return s
	}
	budget := limit - utf16Len(ellipsis)
	n := 0
	for i, r := range s {
		n += utf16.RuneLen(r)
		if n > budget {
			return s[:i] + ellipsis
		}
	}
	return s
}

// keepTailUnits keeps the end of s within limit UTF-16 code units,
// starting with an ellipsis when it cut anything, because the last lines
// of output usually show why a job failed.
func keepTailUnits(s string, limit int) string {
	if utf16Len(s) <= limit {
		return s
	}
	budget := limit - utf16Len(ellipsis)
	n := 0
	end := len(s)
	for end > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:end])
		if n+utf16.RuneLen(r) > budget {
			break
		}
		n += utf16.RuneLen(r)
		end -= size
	}
	return ellipsis + s[end:]
}

// truncateRunes cuts s to at most limit runes, ending with an ellipsis when
// it cut anything.
func truncateRunes(s string, limit int) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	runes := []rune(s)
	return string(runes[:limit-1]) + ellipsis
}
