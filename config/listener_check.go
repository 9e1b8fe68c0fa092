package config

// checkListeners sets Listener.Env, the tokens and passwords, and
// Listener.Problem of every listener by reading its secrets and checking
// its folder, programs and env file on this machine.
func (l *loader) checkListeners() {
	for _, plan := range l.listeners {
		checks := l.checks()
		listener := plan.listener
		listener.Env = resolveEnv(&checks, &l.warnings, plan.settings.env)
		resolveSecrets(&checks, plan.secrets)
		dirKey := plan.settings.workingDir.or(setting[string]{key: plan.path}).key
		dirOK := checkWorkingDir(&checks, l.stats, dirKey, listener.WorkingDir)
		for _, p := range plan.programs {
			p.dir, p.env, p.runnerPath = listener.WorkingDir, listener.Env, plan.runnerPath
			checkProgram(&checks, l.stats, p, dirOK)
		}
		fileEnv := checkEnvFile(&checks, plan.settings.envFile)
		warnShortNamedSecrets(&l.warnings, plan.settings.machineSettings(), fileEnv)
		if listener.Exec != nil {
			listener.Exec.Identity = checkLimits(&checks, plan.settings.limits, "listener")
		}
		listener.Problem = checks.err()
	}
}

// resolveSecrets reads each secret into its target and reports each one
// that cannot be read or is empty. The reports name the source, never the
// value.
func resolveSecrets(checks *reporter, secrets []secretPlan) {
	for _, plan := range secrets {
		secret, err := plan.value.resolve()
		switch {
		case err != nil:
			checks.report(plan.value.key, "%v", err)
		case secret.Reveal() == "":
			checks.report(plan.value.key, "secret from %s is empty: write the token or password there", secret.Source)
		default:
			*plan.target = &secret
		}
	}
}
