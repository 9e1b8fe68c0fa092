package bluesky

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Limits of app.bsky.feed.post text, from its lexicon.
const (
	maxPostGraphemes = 300
	maxPostBytes     = 3000
)

// validatePostText rejects text that the server would reject. Text over
// the limits is rejected, not truncated, because a truncated post can
// mean something other than what the hook wrote.
func validatePostText(text string) error {
	if strings.TrimSpace(text) == "" {
		return errors.New("post text is empty")
	}
	if !utf8.ValidString(text) {
		return errors.New("post text is not valid UTF-8")
	}
	if n := countGraphemes(text); n > maxPostGraphemes {
		return fmt.Errorf("post text is %d graphemes long; Bluesky allows at most %d, so shorten it", n, maxPostGraphemes)
	}
	if len(text) > maxPostBytes {
		return fmt.Errorf("post text is %d bytes long; Bluesky allows at most %d", len(text), maxPostBytes)
	}
	return nil
}

// Runes that never start a grapheme cluster besides the marks.
const (
	zeroWidthJoiner    = '\u200d'
	zeroWidthNonJoiner = '\u200c'
)

// countGraphemes counts the extended grapheme clusters of s, as the
// server does for the maxGraphemes limit.
//
// NOTE: this approximates Unicode UAX #29 with the standard library's
// tables, since golang.org/x/text is not a dependency. Marks, ZWJ, ZWNJ,
// emoji skin tone modifiers, tag characters and Hangul vowel and final
// jamo extend the previous cluster, a rune after ZWJ joins it, regional
// indicators pair into flags and CR LF counts once. It differs from UAX
// #29 for Prepend characters, Hangul leading jamo sequences and the Indic
// conjunct rule of Unicode 15.1, which are rare in posts.
func countGraphemes(s string) int {
	count := 0
	previous := rune(-1)
	pendingFlag := false
	for _, r := range s {
		switch {
		case previous == '\r' && r == '\n':
		case previous == zeroWidthJoiner:
		case extendsCluster(r):
		case isRegionalIndicator(r) && pendingFlag:
			pendingFlag = false
		default:
			count++
			pendingFlag = isRegionalIndicator(r)
		}
		previous = r
	}
	return count
}

// extendsCluster reports whether r attaches to the cluster before it.
func extendsCluster(r rune) bool {
	switch {
	case unicode.In(r, unicode.Mn, unicode.Me, unicode.Mc):
		return true
	case r == zeroWidthJoiner || r == zeroWidthNonJoiner:
		return true
	case r >= 0x1f3fb && r <= 0x1f3ff: // emoji skin tone modifiers
		return true
	case r >= 0xe0020 && r <= 0xe007f: // tag characters of flag sequences
		return true
	case r >= 0x1160 && r <= 0x11ff, r >= 0xd7b0 && r <= 0xd7ff: // Hangul V and T jamo
		return true
	}
	return false
}

func isRegionalIndicator(r rune) bool { return r >= 0x1f1e6 && r <= 0x1f1ff }

// span is a link or mention in post text, as UTF-8 byte offsets: start
// inclusive, end exclusive. Exactly one of link and handle is set.
type span struct {
	start, end int
	link       string
	handle     string
}

// A link or mention starts the text or follows whitespace or "(", so
// that "a@b.c" in an email address is no mention. The patterns compile
// at the first post rather than at every start of every command.
var (
	linkPattern = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?:^|[\s(])(https?://[^\s<>"]+)`)
	})
	mentionPattern = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?:^|[\s(])(@[a-zA-Z0-9][a-zA-Z0-9.-]*)`)
	})
)

// findSpans returns the links and mentions of text in byte order. Go
// strings are UTF-8 bytes, so the regexp offsets are the byte offsets
// that facets need.
func findSpans(text string) []span {
	var spans []span
	for _, match := range linkPattern().FindAllStringSubmatchIndex(text, -1) {
		start := match[2]
		link := trimLink(text[start:match[3]])
		if len(link) > len("https://") {
			spans = append(spans, span{start: start, end: start + len(link), link: link})
		}
	}

	links := spans
	for _, match := range mentionPattern().FindAllStringSubmatchIndex(text, -1) {
		start := match[2]
		mention := strings.TrimRight(text[start:match[3]], ".-")
		handle, err := syntax.ParseHandle(mention[1:])
		if err != nil {
			continue
		}
		s := span{start: start, end: start + len(mention), handle: handle.Normalize().String()}
		if !overlapsAny(s, links) {
			spans = append(spans, s)
		}
	}

	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	return spans
}

// trimLink drops the sentence punctuation that ends a link in prose, and
// a closing parenthesis that the link does not open.
func trimLink(link string) string {
	for {
		trimmed := strings.TrimRight(link, `.,;:!?'"`)
		if strings.HasSuffix(trimmed, ")") && !strings.Contains(trimmed, "(") {
			trimmed = trimmed[:len(trimmed)-1]
		}
		if trimmed == link {
			return link
		}
		link = trimmed
	}
}

func overlapsAny(s span, others []span) bool {
	for _, other := range others {
		if s.start < other.end && other.start < s.end {
			return true
		}
	}
	return false
}
