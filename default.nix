# Nix entry point: returns { package, module }.
#
#   (import ./default.nix { inherit pkgs; }).package   the agent-runner binary
#   (import ./default.nix { inherit pkgs; }).module    the NixOS module services.agent-runner
#
# An attribute set is used in place of passthru.module because the module
# does not depend on these arguments: it builds its default package from
# the system's own pkgs. See nix/README.md.
{
  pkgs ? import <nixpkgs> { },
  version ? "0.1.0",
}:

{
  package = pkgs.callPackage ./nix/package.nix { inherit version; };
  module = import ./nix/module.nix;
}
