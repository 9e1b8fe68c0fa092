# Evaluates default.nix, nix/package.nix and nix/module.nix against the
# stand-ins in nix/stubs.nix, and checks the package's build arguments,
# the systemd unit and the rendered config.toml. Needs no nixpkgs:
#
#   nix-instantiate --eval --strict --json --store dummy:// nix/eval-test.nix
#
# Prints { checks, config, unit }: the names of the checks that passed,
# the TOML and the unit lines of the "full" case. A failed check throws
# with its name, the expected and the actual value.
let
  inherit (builtins)
    all
    any
    concatStringsSep
    elem
    elemAt
    filter
    genList
    head
    isFunction
    length
    map
    match
    toJSON
    tryEval
    ;

  stubs = import ./stubs.nix;
  inherit (stubs) lib pkgs;
  root = toString ../.;

  fail = name: message: throw "nix/eval-test.nix: ${name}: ${message}";

  expect =
    name: expected: actual:
    if expected == actual then name else fail name "expected ${toJSON expected}, got ${toJSON actual}";

  expectLine =
    name: lines: line:
    if elem line lines then
      name
    else
      fail name "expected the line ${line} in:\n${concatStringsSep "\n" lines}";

  expectNoKey =
    name: lines: key:
    if any (lib.hasPrefix "${key}=") lines then
      fail name "expected no ${key}= line in:\n${concatStringsSep "\n" lines}"
    else
      name;

  # Checks that messages and patterns (regular expressions) pair up one
  # to one, in order.
  expectMessages =
    name: patterns: messages:
    let
      count = length patterns;
      matchesAt = i: match (elemAt patterns i) (elemAt messages i) != null;
    in
    if count == length messages && all matchesAt (genList (i: i) count) then
      name
    else
      fail name "expected messages matching ${toJSON patterns}, got ${toJSON messages}";

  expectThrows =
    name: value:
    if (tryEval (builtins.deepSeq value value)).success then
      fail name "expected an evaluation error, got ${toJSON value}"
    else
      name;

  evalService =
    values:
    stubs.evalModule {
      module = import ./module.nix;
      values.services.agent-runner = values;
    };

  # Everything a case checks: the module's output, the unit, the config
  # file (the writeText stand-in, which keeps its text) and the parsed
  # config.
  inspect =
    values:
    let
      evaluated = evalService values;
      service = evaluated.config.systemd.services.agent-runner;
      configFile = head service.reloadTriggers;
    in
    evaluated
    // {
      inherit service configFile;
      unit = stubs.renderService service;
      settings = builtins.fromTOML configFile.text;
      package = evaluated.config.services.agent-runner.package;
    };

  defaultRunnerPath = [
    "/run/wrappers/bin"
    "/run/current-system/sw/bin"
  ];

  # Package: default.nix's package with an explicit version.

  built = import ../default.nix {
    inherit pkgs;
    version = "1.2.3";
  };
  package = built.package;

  sourceCases = [
    [ "main.go" "regular" true ]
    [ "unit_test.go" "regular" true ]
    [ "go.mod" "regular" true ]
    [ "go.sum" "regular" true ]
    [ "config" "directory" true ]
    [ "config/load.go" "regular" true ]
    [ "config/testdata" "directory" false ]
    [ "README.md" "regular" false ]
    [ "config.toml" "regular" false ]
    [ "default.nix" "regular" false ]
    [ "agent-runner" "regular" false ]
    [ "result" "symlink" false ]
    [ ".git" "directory" false ]
    [ ".ci" "directory" false ]
    [ "contrib" "directory" false ]
    [ "nix" "directory" false ]
    [ "scripts" "directory" false ]
    [ "var" "directory" false ]
  ];

  packageChecks = [
    (expect "package pname" "agent-runner" package.pname)
    (expect "package version" "1.2.3" package.version)
    (expect "package ldflags" [ "-s" "-w" "-X main.version=1.2.3" ] package.ldflags)
    (expect "package subPackages" [ "." ] package.subPackages)
    (expect "package doCheck" false package.doCheck)
    (expect "package vendorHash" lib.fakeHash package.vendorHash)
    (expect "package mainProgram" "agent-runner" package.meta.mainProgram)
    (expect "package src root" root (toString package.src.src))
    (expect "default.nix module is a function" true (isFunction built.module))
  ]
  ++ map (
    case:
    let
      path = elemAt case 0;
      type = elemAt case 1;
    in
    expect "package src keeps ${path} (${type})" (elemAt case 2) (package.src.filter "${root}/${path}" type)
  ) sourceCases;

  # Module, full case: every option set.

  fullSettings = {
    runner = {
      timezone = "Europe/Berlin";
      history = 20;
    };
    defaults.timeout = "5m";
    jobs.digest = {
      command = [
        "python3"
        "/srv/bot/digest.py"
      ];
      schedule = "0 8 * * *";
      env.API_TOKEN.credential = "api-token";
    };
    listeners.bot = {
      kind = "discord";
      token.credential = "discord-token";
      channels = [ "123456789012345678" ];
    };
  };

  full = inspect {
    enable = true;
    settings = fullSettings;
    extraPath = [
      pkgs.python3
      pkgs.git
    ];
    environmentFiles = [ "/run/secrets/agent-runner.env" ];
    credentials = {
      api-token = "/run/secrets/api-token";
      discord-token = "/run/secrets/discord-token";
    };
    readWritePaths = [
      "/srv/bot-data"
      "/srv/shared"
    ];
    shutdownTimeout = 60;
  };
  fullStorePath = full.configFile.outPath;
  configPath = "/etc/agent-runner/config.toml";

  fullChecks = [
    (expect "full: no failed assertions" [ ] full.failedAssertions)
    (expectLine "full: StartLimitIntervalSec" full.unit.unit "StartLimitIntervalSec=0")
    (expectNoKey "full: StartLimitIntervalSec not in [Service]" full.unit.service "StartLimitIntervalSec")
    (expectLine "full: After" full.unit.unit "After=network-online.target")
    (expectLine "full: Wants" full.unit.unit "Wants=network-online.target")
    (expectLine "full: restart trigger" full.unit.unit
      "X-Restart-Triggers=${full.package.outPath} ${toJSON { history = 20; }}"
    )
    (expectLine "full: reload trigger" full.unit.unit "X-Reload-Triggers=${fullStorePath}")
    (expect "full: restartTriggers" [
      full.package
      (toJSON { history = 20; })
    ] full.service.restartTriggers)
    (expect "full: wantedBy" [ "multi-user.target" ] full.service.wantedBy)
    (expectLine "full: Type" full.unit.service "Type=notify")
    (expectLine "full: NotifyAccess" full.unit.service "NotifyAccess=main")
    (expectLine "full: ExecStart" full.unit.service
      "ExecStart=${full.package.outPath}/bin/agent-runner run --config ${configPath}"
    )
    (expectLine "full: ExecReload" full.unit.service
      "ExecReload=${pkgs.coreutils.outPath}/bin/kill -HUP $MAINPID"
    )
    (expectLine "full: Environment" full.unit.service "Environment=\"AGENT_RUNNER_CONFIG=${configPath}\"")
    (expectLine "full: User" full.unit.service "User=agent-runner")
    (expectLine "full: Group" full.unit.service "Group=agent-runner")
    (expectLine "full: WorkingDirectory" full.unit.service "WorkingDirectory=/var/lib/agent-runner")
    (expectLine "full: StateDirectory" full.unit.service "StateDirectory=agent-runner")
    (expectLine "full: RuntimeDirectory" full.unit.service "RuntimeDirectory=agent-runner")
    (expectLine "full: Restart" full.unit.service "Restart=always")
    (expectLine "full: RestartSec" full.unit.service "RestartSec=5s")
    (expectLine "full: WatchdogSec" full.unit.service "WatchdogSec=2min")
    (expectLine "full: KillMode" full.unit.service "KillMode=mixed")
    (expectLine "full: TimeoutStopSec" full.unit.service "TimeoutStopSec=75s")
    (expectLine "full: EnvironmentFile" full.unit.service "EnvironmentFile=/run/secrets/agent-runner.env")
    (expectLine "full: LoadCredential api-token" full.unit.service
      "LoadCredential=api-token:/run/secrets/api-token"
    )
    (expectLine "full: LoadCredential discord-token" full.unit.service
      "LoadCredential=discord-token:/run/secrets/discord-token"
    )
    (expectLine "full: ReadWritePaths bot-data" full.unit.service "ReadWritePaths=/srv/bot-data")
    (expectLine "full: ReadWritePaths shared" full.unit.service "ReadWritePaths=/srv/shared")
    (expectLine "full: ProtectSystem" full.unit.service "ProtectSystem=strict")
    (expectLine "full: PrivateTmp" full.unit.service "PrivateTmp=true")
    (expectLine "full: NoNewPrivileges" full.unit.service "NoNewPrivileges=true")
    (expectLine "full: ProtectKernelTunables" full.unit.service "ProtectKernelTunables=true")
    (expectLine "full: ProtectKernelModules" full.unit.service "ProtectKernelModules=true")
    (expectLine "full: ProtectControlGroups" full.unit.service "ProtectControlGroups=true")
    (expectLine "full: RestrictSUIDSGID" full.unit.service "RestrictSUIDSGID=true")
    (expectLine "full: RestrictRealtime" full.unit.service "RestrictRealtime=true")
    (expectLine "full: LockPersonality" full.unit.service "LockPersonality=true")
    (expectNoKey "full: no ProtectHome" full.unit.service "ProtectHome")
    (expect "full: systemPackages" [ full.package ] full.config.environment.systemPackages)
    (expect "full: AGENT_RUNNER_CONFIG variable" configPath full.config.environment.variables.AGENT_RUNNER_CONFIG)
    (expect "full: /etc link to the config" full.configFile
      full.config.environment.etc."agent-runner/config.toml".source
    )
    (expect "full: system user" {
      isSystemUser = true;
      group = "agent-runner";
      home = "/var/lib/agent-runner";
      description = "agent-runner daemon";
    } full.config.users.users.agent-runner)
    (expect "full: system group" { agent-runner = { }; } full.config.users.groups)
    (expect "full: no firewall" false (full.config ? networking))
    (expect "full: config runner table" {
      state_dir = "/var/lib/agent-runner";
      socket = "/run/agent-runner/control.sock";
      path = [
        "${pkgs.python3.outPath}/bin"
        "${pkgs.git.outPath}/bin"
      ]
      ++ defaultRunnerPath;
      shutdown_timeout = "60s";
      timezone = "Europe/Berlin";
      history = 20;
    } full.settings.runner)
    (expect "full: config keeps defaults" fullSettings.defaults full.settings.defaults)
    (expect "full: config keeps jobs" fullSettings.jobs full.settings.jobs)
    (expect "full: config keeps listeners" fullSettings.listeners full.settings.listeners)
  ];

  # Module, default options: only enable set.

  minimal = inspect { enable = true; };

  minimalChecks = [
    (expect "minimal: no failed assertions" [ ] minimal.failedAssertions)
    (expectLine "minimal: TimeoutStopSec" minimal.unit.service "TimeoutStopSec=45s")
    (expectNoKey "minimal: no LoadCredential" minimal.unit.service "LoadCredential")
    (expectNoKey "minimal: no EnvironmentFile" minimal.unit.service "EnvironmentFile")
    (expectNoKey "minimal: no ReadWritePaths" minimal.unit.service "ReadWritePaths")
    (expect "minimal: config is the runner table" {
      runner = {
        state_dir = "/var/lib/agent-runner";
        socket = "/run/agent-runner/control.sock";
        path = defaultRunnerPath;
        shutdown_timeout = "30s";
      };
    } minimal.settings)
    (expect "minimal: default package name" "agent-runner-0.1.0" minimal.package.name)
    (expect "minimal: default package ldflags" [ "-s" "-w" "-X main.version=0.1.0" ] minimal.package.ldflags)
  ];

  # Module, configFile in place of settings.

  secretConfig = "/run/secrets/agent-runner.toml";
  external = evalService {
    enable = true;
    configFile = secretConfig;
  };
  externalService = external.config.systemd.services.agent-runner;
  externalUnit = stubs.renderService externalService;

  externalChecks = [
    (expect "configFile: no failed assertions" [ ] external.failedAssertions)
    (expectLine "configFile: ExecStart" externalUnit.service
      "ExecStart=${minimal.package.outPath}/bin/agent-runner run --config ${configPath}"
    )
    (expectLine "configFile: Environment" externalUnit.service "Environment=\"AGENT_RUNNER_CONFIG=${configPath}\"")
    (expectLine "configFile: reload trigger" externalUnit.unit "X-Reload-Triggers=${secretConfig}")
    (expect "configFile: restartTriggers" [ minimal.package ] externalService.restartTriggers)
    (expect "configFile: /etc link" secretConfig external.config.environment.etc."agent-runner/config.toml".source)
    (expect "configFile: AGENT_RUNNER_CONFIG variable" configPath
      external.config.environment.variables.AGENT_RUNNER_CONFIG
    )
  ];

  # Module, what nixos-rebuild switch does after an edit. It reloads a
  # unit whose file changed only in X-Reload-Triggers, and restarts one
  # with any other change.

  withSettings =
    edit:
    inspect {
      enable = true;
      settings = lib.recursiveUpdate fullSettings edit;
    };
  baseline = withSettings { };
  jobEdited = withSettings { jobs.digest.schedule = "0 9 * * *"; };
  historyEdited = withSettings { runner.history = 30; };
  httpEdited = withSettings { runner.http = "127.0.0.1:9090"; };
  alertsEdited = withSettings {
    alerts.ops = {
      kind = "exec";
      command = [ "/srv/bot/notify.sh" ];
    };
  };
  withoutReloadTrigger = filter (line: !(lib.hasPrefix "X-Reload-Triggers=" line));

  switchChecks = [
    (expect "job edit: [Service] unchanged" baseline.unit.service jobEdited.unit.service)
    (expect "job edit: [Unit] unchanged but for the reload trigger" (withoutReloadTrigger baseline.unit.unit) (
      withoutReloadTrigger jobEdited.unit.unit
    ))
    (expect "job edit: reload trigger changed" false (
      baseline.configFile.outPath == jobEdited.configFile.outPath
    ))
    (expect "history edit: restart trigger changed" false (
      baseline.service.restartTriggers == historyEdited.service.restartTriggers
    ))
    (expect "http edit: restart trigger changed" false (
      baseline.service.restartTriggers == httpEdited.service.restartTriggers
    ))
    (expect "alerts edit: restart trigger changed" false (
      baseline.service.restartTriggers == alertsEdited.service.restartTriggers
    ))
  ];

  # Module, rejected and optional configurations.

  both = evalService {
    enable = true;
    configFile = secretConfig;
    settings.jobs.a.command = [ "true" ];
  };

  selfLink = evalService {
    enable = true;
    configFile = configPath;
  };

  moduleKeys = evalService {
    enable = true;
    settings.runner = {
      state_dir = "/srv/state";
      path = [ "/bin" ];
      timezone = "UTC";
    };
  };

  customUser = evalService {
    enable = true;
    user = "bot";
    group = "users";
  };
  customUserUnit = stubs.renderService customUser.config.systemd.services.agent-runner;

  firewall = evalService {
    enable = true;
    openFirewall = true;
    settings.runner.http = "0.0.0.0:8088";
  };

  firewallClosed = evalService {
    enable = true;
    settings.runner.http = "0.0.0.0:8088";
  };

  firewallWithoutAddress = evalService {
    enable = true;
    openFirewall = true;
  };

  firewallBadAddress = evalService {
    enable = true;
    openFirewall = true;
    settings.runner.http = "localhost";
  };

  disabled = evalService { };

  otherChecks = [
    (expectMessages "configFile with settings fails an assertion" [
      "services.agent-runner: set either configFile or settings, not both.*"
    ] both.failedAssertions)
    (expectMessages "configFile at the /etc link fails an assertion" [
      "services.agent-runner: configFile must not be /etc/agent-runner/config.toml.*"
    ] selfLink.failedAssertions)
    (expectMessages "settings.runner module keys fail assertions" [
      "services.agent-runner: remove settings.runner.path, because .*extraPath.*"
      "services.agent-runner: remove settings.runner.state_dir, because .*"
    ] moduleKeys.failedAssertions)
    (expectLine "custom user: User" customUserUnit.service "User=bot")
    (expectLine "custom user: Group" customUserUnit.service "Group=users")
    (expect "custom user: no users created" false (customUser.config ? users))
    (expect "openFirewall: port opened" [ 8088 ] firewall.config.networking.firewall.allowedTCPPorts)
    (expect "http without openFirewall: nothing opened" false (firewallClosed.config ? networking))
    (expect "openFirewall without http: nothing opened" false (firewallWithoutAddress.config ? networking))
    (expectThrows "openFirewall with a port-less http throws" firewallBadAddress.config.networking)
    (expect "disabled: no unit" false (disabled.config ? systemd))
    (expect "disabled: no packages" false (disabled.config ? environment))
    (expectThrows "stand-in rejects an unknown option" (evalService { extraPaths = [ ]; }).config)
    (expectThrows "stand-in rejects a wrong type" (evalService { shutdownTimeout = "30s"; }).config)
  ];
in
{
  checks = packageChecks ++ fullChecks ++ minimalChecks ++ externalChecks ++ switchChecks ++ otherChecks;
  config = full.configFile.text;
  unit = full.unit.text;
}
