package config

import (
	"slices"
	"strings"
)

// secretStems are the words that make a variable a secret by its name,
// when a word of the name is one of them or ends with one, with or without
// a final S: GITHUB_TOKEN, APITOKEN, DB_PASSWORD, CLIENT_SECRETS. A word
// only ending with one counts, because names glue words together, but a
// word starting with one does not, so TOKENIZERS_PARALLELISM stays plain.
// The KEY stems are matched on two words joined, so both API_KEY and
// APIKEY count, while KEY alone, as in SORT_KEY, does not.
var secretStems = []string{
	"TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE",
	"APIKEY", "PRIVATEKEY", "ACCESSKEY",
	"CREDENTIAL", "COOKIE", "WEBHOOK",
}

// amountWords are the words of a name that sets a limit or an amount, as
// in MAX_TOKENS or PASSWORD_MIN_LENGTH. Its value is a number such as
// 4096, so redacting it would cut that number out of unrelated output.
var amountWords = []string{"MAX", "MIN", "LIMIT", "COUNT", "NUM", "BUDGET", "LENGTH", "SIZE", "TTL"}

// SecretName reports whether a variable of that name holds a secret, so
// that its value is redacted from output even when it is written inline
// or read from an env_file or the daemon's environment. Case is ignored
// and the name is split into words at underscores. It counts when a word,
// or two neighbouring words joined, is or ends with one of secretStems,
// with or without a final S, or when its last word is AUTH or PASS or
// ends with AUTH. Those two count only at the end, because AUTH names a
// credential in BASIC_AUTH or TWITCH_OAUTH but a setting in AUTH_URL, and
// PASS a password in SMTP_PASS but not in PASS_THROUGH. A name with a
// word of amountWords is no secret.
func SecretName(name string) bool {
	words := strings.Split(strings.ToUpper(name), "_")
	for _, word := range words {
		if slices.Contains(amountWords, strings.TrimSuffix(word, "S")) {
			return false
		}
	}
	for i, word := range words {
		if hasSecretStem(word) {
			return true
		}
		if i > 0 && hasSecretStem(words[i-1]+word) {
			return true
		}
	}
	last := words[len(words)-1]
	return strings.HasSuffix(last, "AUTH") || last == "PASS"
}

// switchValues are values that turn a setting on or off. No secret is
// one, and redacting one would cut every true or off out of the output.
var switchValues = []string{"true", "false", "yes", "no", "on", "off", "enabled", "disabled"}

// NamedSecret reports whether the value of a variable is a secret by its
// name: the name is a SecretName and the value is no switch such as true
// or off, which a name such as REQUIRE_AUTH or USE_COOKIES often holds.
func NamedSecret(name, value string) bool {
	return SecretName(name) && !slices.Contains(switchValues, strings.ToLower(strings.TrimSpace(value)))
}

// hasSecretStem reports whether word ends with a secret stem, or with one
// and an S.
func hasSecretStem(word string) bool {
	word = strings.TrimSuffix(word, "S")
	for _, stem := range secretStems {
		if strings.HasSuffix(word, stem) {
			return true
		}
	}
	return false
}
