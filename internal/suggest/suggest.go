// Package suggest guesses which known name a mistyped one meant, for the
// "did you mean" of config keys, values and command-line flags.
package suggest

// Closest returns the entry of names within two edits of name, or
// within one edit when name has at most 4 bytes, or "" when there is none.
// Two edits turn most short names into another short key, such as tz or
// path into at, and such a guess would mislead.
func Closest(name string, names []string) string {
	maxDistance := 2
	if len(name) <= 4 {
		maxDistance = 1
	}
	best, bestDistance := "", maxDistance+1
	for _, candidate := range names {
		if d := editDistance(name, candidate); d < bestDistance {
			best, bestDistance = candidate, d
		}
	}
	return best
}

// editDistance returns the optimal string alignment distance between a
// and b in bytes: the Levenshtein distance with a swap of two adjacent
// bytes, as in "tsl" for "tls", counted as one edit. It keeps three rows,
// so a long key costs memory in proportion to b only.
func editDistance(a, b string) int {
	beforePrevious := make([]int, len(b)+1)
	previous := make([]int, len(b)+1)
	current := make([]int, len(b)+1)
	for j := range previous {
		previous[j] = j
	}
	for i := 1; i <= len(a); i++ {
		current[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			current[j] = min(previous[j]+1, current[j-1]+1, previous[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				current[j] = min(current[j], beforePrevious[j-2]+1)
			}
		}
		beforePrevious, previous, current = previous, current, beforePrevious
	}
	return previous[len(b)]
}
