# NixOS module services.agent-runner: the daemon under one systemd unit,
# with the same properties as contrib/agent-runner.service.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.agent-runner;
  settingsFormat = pkgs.formats.toml { };

  # StateDirectory= and RuntimeDirectory= below create these folders
  # owned by the service user, and ProtectSystem=strict leaves them
  # writable.
  stateDir = "/var/lib/agent-runner";
  runtimeDir = "/run/agent-runner";
  socketPath = "${runtimeDir}/control.sock";

  # The NixOS folders of config/runner.go's default path. The others in
  # that default (/usr/bin, /bin, ...) hold only env and sh on NixOS.
  defaultRunnerPath = [
    "/run/wrappers/bin"
    "/run/current-system/sw/bin"
  ];
  runnerPath = map (package: "${lib.getBin package}/bin") cfg.extraPath ++ defaultRunnerPath;

  # [runner] keys that the module sets from its own options. A user value
  # for one of them would disagree with the unit, so an assertion rejects
  # it and names the option to use.
  moduleRunnerKeys = {
    state_dir = "the fixed ${stateDir}, which StateDirectory= creates";
    socket = "the fixed ${socketPath}, which RuntimeDirectory= creates";
    path = "services.agent-runner.extraPath";
    shutdown_timeout = "services.agent-runner.shutdownTimeout";
  };
  userRunner = cfg.settings.runner or { };

  effectiveSettings = cfg.settings // {
    runner = userRunner // {
      state_dir = stateDir;
      socket = socketPath;
      path = runnerPath;
      shutdown_timeout = "${toString cfg.shutdownTimeout}s";
    };
  };

  configFile =
    if cfg.configFile != null then cfg.configFile else settingsFormat.generate "agent-runner.toml" effectiveSettings;

  # The daemon, its unit and the admin's shell read the config through
  # this fixed link to configFile. On SIGHUP the daemon re-reads the path
  # it started with, and nixos-rebuild switch restarts a unit whose
  # ExecStart= changed. A store path there would turn every config edit
  # into a restart, and a reload would re-read the old file.
  configPath = "/etc/agent-runner/config.toml";

  # [runner] keys that a reload keeps until the next restart, as
  # keepRestartOnly in daemon/handler.go does. state_dir and socket are
  # fixed above, so only these can change.
  restartOnlyRunner = builtins.intersectAttrs {
    socket_group = null;
    history = null;
    http = null;
    catch_up_spread = null;
  } userRunner;

  # [runner] http is a HOST:PORT address, such as "127.0.0.1:9090"; a
  # bare ":PORT" binds loopback.
  httpAddress = userRunner.http or null;
  httpPortMatch = builtins.match ".*:([0-9]+)" (toString httpAddress);
  httpPort =
    if httpPortMatch == null then
      throw "services.agent-runner: settings.runner.http = \"${toString httpAddress}\" has no port: write HOST:PORT, such as \"0.0.0.0:8080\", or turn openFirewall off"
    else
      lib.toInt (builtins.head httpPortMatch);
in
{
  options.services.agent-runner = {
    enable = lib.mkEnableOption "agent-runner, the daemon for scheduled jobs and bot listeners";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The agent-runner package. The unit, the restart trigger and the admin's shell all use it.";
    };

    settings = lib.mkOption {
      type = settingsFormat.type;
      default = { };
      example = lib.literalExpression ''
        {
          runner.timezone = "Europe/Berlin";
          jobs.digest = {
            command = [ "python3" "/srv/bot/digest.py" ];
            schedule = "0 8 * * *";
            env.API_TOKEN = { credential = "api-token"; };
          };
        }
      '';
      description = ''
        config.toml as a Nix value, rendered with pkgs.formats.toml. The
        module sets state_dir, socket, path and shutdown_timeout in the
        runner table, so set path through extraPath and shutdown_timeout
        through shutdownTimeout. The daemon reads the file as
        ${configPath}, so relative paths in it (working_dir, env_file,
        { file = ... }) resolve against /etc/agent-runner. Write absolute
        paths. Keep secrets out of it, because the Nix store is
        world-readable, and pass them with credentials or environmentFiles.
      '';
    };

    configFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/run/secrets/agent-runner.toml";
      description = ''
        A config.toml to use as it is, in place of settings. The module
        links ${configPath} to it. It cannot add its runner keys to the
        file, so the file itself must set state_dir = "${stateDir}",
        socket = "${socketPath}", a path for NixOS, and a shutdown_timeout
        of at most shutdownTimeout seconds. nixos-rebuild switch reloads
        the daemon only when this path changes. After editing a file
        outside the store, run systemctl reload agent-runner, or restart
        it for socket_group, history, http, catch_up_spread and the
        alerts table.
      '';
    };

    user = lib.mkOption {
      type = lib.types.str;
      default = "agent-runner";
      description = "User the daemon and its jobs run as. The module creates it as a system user only when it is the default.";
    };

    group = lib.mkOption {
      type = lib.types.str;
      default = "agent-runner";
      description = "Primary group of the daemon. The module creates it only when it is the default.";
    };

    extraPath = lib.mkOption {
      type = lib.types.listOf lib.types.package;
      default = [ ];
      example = lib.literalExpression "[ pkgs.python3 pkgs.git ]";
      description = ''
        Packages whose bin folders come first in the PATH of every job,
        before /run/wrappers/bin and /run/current-system/sw/bin.
      '';
    };

    environmentFiles = lib.mkOption {
      type = lib.types.listOf lib.types.path;
      default = [ ];
      example = [ "/run/secrets/agent-runner.env" ];
      description = ''
        Files of KEY=VALUE lines that systemd reads into the daemon's
        environment (EnvironmentFile=). Jobs see a variable only when
        inherit_env names it or env refers to it as { env = "NAME" }.
      '';
    };

    credentials = lib.mkOption {
      type = lib.types.attrsOf lib.types.path;
      default = { };
      example = {
        discord-token = "/run/secrets/discord-token";
      };
      description = ''
        Secrets that systemd passes to the daemon with LoadCredential=NAME:PATH.
        A job or listener reads one with { credential = "NAME" }. The source
        files can stay readable by root only, because systemd reads them as
        root and copies them into the service's private
        $CREDENTIALS_DIRECTORY.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Whether to open the TCP port of settings.runner.http, a HOST:PORT
        address, in the firewall. It does nothing when that key is unset
        or when configFile is used.
      '';
    };

    readWritePaths = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "/srv/bot-data" ];
      description = ''
        Folders that jobs may write besides ${stateDir} and ${runtimeDir}
        (ReadWritePaths=). ProtectSystem=strict makes the rest of the file
        system read-only.
      '';
    };

    shutdownTimeout = lib.mkOption {
      type = lib.types.ints.unsigned;
      default = 30;
      description = ''
        Seconds that a stop waits for running jobs, written to the config
        as shutdown_timeout. systemd's TimeoutStopSec= is 15 seconds longer,
        so the daemon, not systemd, stops the jobs and records them.
      '';
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions = [
          {
            assertion = cfg.configFile == null || cfg.settings == { };
            message = "services.agent-runner: set either configFile or settings, not both. configFile is used as it is, so the settings would be ignored.";
          }
          {
            assertion = cfg.configFile == null || toString cfg.configFile != configPath;
            message = "services.agent-runner: configFile must not be ${configPath}, because the module links that path to configFile. Keep the file at another path.";
          }
        ]
        ++ lib.mapAttrsToList (key: source: {
          assertion = !(userRunner ? ${key});
          message = "services.agent-runner: remove settings.runner.${key}, because the module sets it from ${source}.";
        }) moduleRunnerKeys;

        environment.etc."agent-runner/config.toml".source = configFile;
        environment.systemPackages = [ cfg.package ];
        # `agent-runner list`, `run-job` and `send` in an admin's shell
        # read the same file as the daemon and so find its socket.
        environment.variables.AGENT_RUNNER_CONFIG = configPath;

        systemd.services.agent-runner = {
          description = "agent-runner: scheduled jobs and bot listeners";
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ];

          # nixos-rebuild switch restarts the unit for a new binary, a
          # changed restart-only key or changed alert sinks, which the
          # daemon builds once at start, and reloads it when only the rest
          # of the config changed, so neither old code nor an old config
          # keeps running.
          # With configFile outside the store, a change to the file's
          # content triggers nothing: run systemctl reload agent-runner.
          restartTriggers = [
            cfg.package
          ]
          ++ lib.optional (restartOnlyRunner != { }) (builtins.toJSON restartOnlyRunner)
          ++ lib.optional (cfg.settings ? alerts) (builtins.toJSON { inherit (cfg.settings) alerts; });
          reloadTriggers = [ configFile ];

          environment.AGENT_RUNNER_CONFIG = configPath;

          # Never lock the service out after repeated failures: the
          # daemon must come back, and RestartSec= paces it.
          unitConfig.StartLimitIntervalSec = 0;

          serviceConfig = {
            Type = "notify";
            NotifyAccess = "main";
            ExecStart = "${cfg.package}/bin/agent-runner run --config ${configPath}";
            # SIGHUP re-reads the config. An invalid file is rejected and
            # the running one stays.
            ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
            User = cfg.user;
            Group = cfg.group;
            WorkingDirectory = stateDir;
            StateDirectory = "agent-runner";
            RuntimeDirectory = "agent-runner";
            Restart = "always";
            RestartSec = "5s";
            WatchdogSec = "2min";
            # SIGTERM reaches only the daemon, which stops its jobs within
            # shutdown_timeout. systemd kills what is left after
            # TimeoutStopSec=.
            KillMode = "mixed";
            TimeoutStopSec = "${toString (cfg.shutdownTimeout + 15)}s";
            EnvironmentFile = cfg.environmentFiles;
            LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentials;
            ReadWritePaths = cfg.readWritePaths;

            # Hardening that a runner of arbitrary user scripts can bear,
            # the same set as contrib/agent-runner.service.
            # - ProtectSystem=strict: jobs write only the state folder,
            #   the runtime folder and readWritePaths.
            # - No ProtectHome=: scripts and their data often live in a
            #   home folder, which ProtectSystem=strict leaves readable but
            #   not writable. Set ProtectHome = true through
            #   systemd.services.agent-runner.serviceConfig when none do.
            # - PrivateTmp=: jobs share one /tmp with each other, but not
            #   with the rest of the system.
            # - NoNewPrivileges=: jobs cannot gain privileges, so sudo fails
            #   and the wrappers in /run/wrappers/bin run without their
            #   extra privileges. RestrictSUIDSGID= stops jobs from
            #   creating setuid and setgid files.
            # - ProtectKernelTunables=, ProtectKernelModules=,
            #   ProtectControlGroups=, RestrictRealtime= and
            #   LockPersonality=: scheduled scripts and bot listeners
            #   rarely need these kernel interfaces.
            # - Left out: PrivateDevices= (jobs may use a GPU or a serial
            #   port), MemoryDenyWriteExecute= (breaks JIT runtimes such as
            #   Node.js), SystemCallFilter= and RestrictNamespaces=
            #   (scripts may run containers or sandboxes).
            ProtectSystem = "strict";
            PrivateTmp = true;
            NoNewPrivileges = true;
            ProtectKernelTunables = true;
            ProtectKernelModules = true;
            ProtectControlGroups = true;
            RestrictSUIDSGID = true;
            RestrictRealtime = true;
            LockPersonality = true;
          };
        };
      }

      (lib.mkIf (cfg.user == "agent-runner") {
        users.users.agent-runner = {
          isSystemUser = true;
          group = cfg.group;
          home = stateDir;
          description = "agent-runner daemon";
        };
      })

      (lib.mkIf (cfg.group == "agent-runner") {
        users.groups.agent-runner = { };
      })

      (lib.mkIf (cfg.openFirewall && httpAddress != null) {
        networking.firewall.allowedTCPPorts = [ httpPort ];
      })
    ]
  );
}
