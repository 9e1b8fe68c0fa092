# The agent-runner binary, built with nixpkgs' buildGoModule.
# Call it with pkgs.callPackage, as default.nix and nix/module.nix do.
{
  lib,
  # go.mod requires Go 1.26. With a nixpkgs whose default Go is older, the
  # build stops with "go.mod requires go >= 1.26.0", so pass
  # buildGoModule = pkgs.buildGo126Module through callPackage or .override.
  buildGoModule,
  version ? "0.1.0",
}:

let
  root = ../.;

  # Top-level folders with no Go code: docs, scripts, example data and
  # this Nix code. Leaving them out keeps a script or README edit from
  # rebuilding the binary.
  ignoredTopFolders = [
    "contrib"
    "nix"
    "scripts"
    "var"
  ];

  # Keep go.mod, go.sum and every .go file, test files included. `go mod
  # vendor` also vendors the packages that tests import, so leaving test
  # files out would give a different vendorHash from the one a checkout
  # with tests produces. The repository has no //go:embed files, so Go
  # sources are all the build reads. Hidden folders (.git, .ci) and
  # testdata folders are skipped.
  isGoSource =
    path: type:
    let
      relative = lib.removePrefix (toString root + "/") (toString path);
      name = baseNameOf (toString path);
    in
    if type == "directory" then
      !(lib.hasPrefix "." name || name == "testdata" || builtins.elem relative ignoredTopFolders)
    else
      type == "regular" && (lib.hasSuffix ".go" name || relative == "go.mod" || relative == "go.sum");
in
buildGoModule {
  pname = "agent-runner";
  inherit version;

  src = lib.cleanSourceWith {
    name = "agent-runner-source";
    src = root;
    filter = isGoSource;
  };

  # Hash of the vendored modules. To update it after go.mod or go.sum
  # changes, build once with this fake value; the build fails with a hash
  # mismatch, and the "got:" line shows the real hash to paste here.
  vendorHash = lib.fakeHash;

  subPackages = [ "." ];

  # -s -w drop the symbol table and DWARF data; main.version is what
  # `agent-runner version` prints.
  ldflags = [
    "-s"
    "-w"
    "-X main.version=${version}"
  ];

  # The tests start the daemon, child processes and Unix sockets, and they
  # need sh, setsid and pkill. The Nix build sandbox provides none of these
  # reliably, so the tests run in the repository's own CI (./test.sh).
  doCheck = false;

  meta = {
    description = "One daemon that runs scheduled jobs and bot listeners from config.toml";
    mainProgram = "agent-runner";
    # The daemon relies on Linux-only features: a child subreaper,
    # process groups and sd_notify.
    platforms = lib.platforms.linux;
  };
}
