package config

import "testing"

func TestSecretName(t *testing.T) {
	secret := []string{
		"API_TOKEN", "GITHUB_TOKEN", "githubToken", "APITOKEN", "ACCESS_TOKENS",
		"CLIENT_SECRET", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "DBPASSWORD",
		"MYSQL_PASSWD", "GPG_PASSPHRASE", "OPENAI_API_KEY", "X_APIKEY",
		"SSH_PRIVATE_KEY", "AWS_ACCESS_KEY_ID", "GOOGLE_APPLICATION_CREDENTIALS",
		"SESSION_COOKIE", "DISCORD_WEBHOOK_URL", "BASIC_AUTH", "TWITCH_OAUTH",
		"AUTH", "SMTP_PASS", "api_key", "Bot_Token",
	}
	plain := []string{
		"", "PATH", "HOME", "PWD", "DATA_DIR", "TOKENIZERS_PARALLELISM",
		"AUTH_URL", "AUTH_METHOD", "GIT_AUTHOR_NAME", "AUTHOR", "PASS_THROUGH",
		"BYPASS", "COMPASS", "SORT_KEY", "KEY", "CACHE_KEY", "PASSENGER_COUNT",
		"SECRETARY_NAME", "PRIVATE", "ACCESS_LOG",
		"MAX_TOKENS", "CLAUDE_CODE_MAX_OUTPUT_TOKENS", "TOKEN_LIMIT",
		"NUM_TOKENS", "PASSWORD_MIN_LENGTH", "COOKIE_MAX_AGE", "TOKEN_TTL",
	}
	for _, name := range secret {
		if !SecretName(name) {
			t.Errorf("SecretName(%q) = false, want true", name)
		}
	}
	for _, name := range plain {
		if SecretName(name) {
			t.Errorf("SecretName(%q) = true, want false", name)
		}
	}
}

func TestNamedSecretSkipsSwitches(t *testing.T) {
	for _, value := range []string{"true", "FALSE", "yes", "no", "On", "off", " enabled ", "disabled"} {
		if NamedSecret("REQUIRE_AUTH", value) {
			t.Errorf("NamedSecret(REQUIRE_AUTH, %q) = true, want false for a switch", value)
		}
	}
	if !NamedSecret("REQUIRE_AUTH", "truely-a-secret") {
		t.Errorf("NamedSecret(REQUIRE_AUTH, truely-a-secret) = false, want true")
	}
	if NamedSecret("DATA_DIR", "/srv/data") {
		t.Errorf("NamedSecret(DATA_DIR, /srv/data) = true, want false for a plain name")
	}
}
