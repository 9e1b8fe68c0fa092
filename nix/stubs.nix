# Small stand-ins for nixpkgs' lib and pkgs and for the NixOS module
# system, so nix/eval-test.nix can evaluate nix/package.nix and
# nix/module.nix with nix-instantiate alone, without a nixpkgs checkout.
#
# They cover only what those two files use, and follow nixpkgs' behavior
# for it. They are not nixpkgs: the real module system has priorities,
# type merging and many more options, the real pkgs.formats.toml renders
# through remarshal, and real derivations build. Only a NixOS machine
# checks those.
let
  inherit (builtins)
    all
    attrNames
    attrValues
    concatLists
    concatStringsSep
    filter
    foldl'
    functionArgs
    hashString
    intersectAttrs
    isAttrs
    isBool
    isFloat
    isFunction
    isInt
    isList
    isPath
    isString
    listToAttrs
    mapAttrs
    match
    substring
    toJSON
    ;

  # A fake store path: the real hash is of the build recipe, this one is
  # of the given text.
  storePath = name: seed: "/nix/store/${substring 0 32 (hashString "sha256" seed)}-${name}";

  fakePackage = name: {
    type = "derivation";
    inherit name;
    outPath = storePath name name;
  };

  lib = rec {
    fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    platforms.linux = [
      "aarch64-linux"
      "x86_64-linux"
    ];

    hasPrefix = prefix: text: substring 0 (builtins.stringLength prefix) text == prefix;
    hasSuffix =
      suffix: text:
      let
        textLength = builtins.stringLength text;
        suffixLength = builtins.stringLength suffix;
      in
      textLength >= suffixLength && substring (textLength - suffixLength) suffixLength text == suffix;
    removePrefix =
      prefix: text:
      if hasPrefix prefix text then
        substring (builtins.stringLength prefix) (builtins.stringLength text) text
      else
        text;
    toInt =
      text:
      let
        digits = match "0*([0-9]+)" text;
      in
      if digits == null then throw "lib.toInt: could not convert \"${text}\" to an integer" else builtins.fromJSON (builtins.head digits);

    optional = condition: element: if condition then [ element ] else [ ];
    mapAttrsToList = f: attrs: map (name: f name attrs.${name}) (attrNames attrs);
    filterAttrs =
      predicate: attrs:
      listToAttrs (
        map (name: {
          inherit name;
          value = attrs.${name};
        }) (filter (name: predicate name attrs.${name}) (attrNames attrs))
      );
    recursiveUpdate =
      left: right:
      left
      // mapAttrs (
        name: value:
        if isAttrs value && isAttrs (left.${name} or null) then recursiveUpdate left.${name} value else value
      ) right;
    getBin = package: package.bin or package;

    # Like nixpkgs, this does not copy src: a real cleanSourceWith copies
    # only when the result is used as a string, and the filter is kept
    # here so that the test can call it.
    cleanSourceWith =
      {
        src,
        filter,
        name ? "source",
      }:
      {
        inherit src filter name;
        outPath = storePath name (toString src);
      };

    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption =
      name:
      mkOption {
        type = types.bool;
        default = false;
        example = true;
        description = "Whether to enable ${name}.";
      };
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };

    # Each type only checks a value, because the stand-in module system
    # takes one definition per option and merges nothing by type.
    types = rec {
      bool = {
        description = "boolean";
        check = isBool;
      };
      str = {
        description = "string";
        check = isString;
      };
      path = {
        description = "path";
        check = value: isPath value || (isString value && hasPrefix "/" value) || (isAttrs value && value ? outPath);
      };
      package = {
        description = "package";
        check = value: isAttrs value && value.type or null == "derivation";
      };
      ints.unsigned = {
        description = "unsigned integer, meaning >=0";
        check = value: isInt value && value >= 0;
      };
      listOf = element: {
        description = "list of ${element.description}";
        check = value: isList value && all element.check value;
      };
      attrsOf = element: {
        description = "attribute set of ${element.description}";
        check = value: isAttrs value && all element.check (attrValues value);
      };
      nullOr = element: {
        description = "null or ${element.description}";
        check = value: value == null || element.check value;
      };
    };
  };

  # TOML text for an attribute set: scalars and arrays as key = value
  # lines, nested attribute sets as [table] sections, and attribute sets
  # inside arrays as inline tables. Strings use JSON escapes, which are
  # valid in TOML basic strings.
  toTOML =
    let
      showKey = key: if match "[A-Za-z0-9_-]+" key != null then key else toJSON key;
      showValue =
        value:
        if isString value || isPath value then
          toJSON (toString value)
        else if isBool value then
          (if value then "true" else "false")
        else if isInt value || isFloat value then
          toJSON value
        else if isList value then
          "[" + concatStringsSep ", " (map showValue value) + "]"
        else if isAttrs value then
          "{ " + concatStringsSep ", " (lib.mapAttrsToList (key: x: "${showKey key} = ${showValue x}") value) + " }"
        else
          throw "pkgs.formats.toml stand-in: cannot render a ${builtins.typeOf value} as TOML";
      showTable =
        path: table:
        let
          keyValues = lib.filterAttrs (_: value: !(isAttrs value)) table;
          subtables = lib.filterAttrs (_: isAttrs) table;
          header =
            if path == [ ] || (keyValues == { } && subtables != { }) then
              [ ]
            else
              [ "[${concatStringsSep "." (map showKey path)}]" ];
          lines = lib.mapAttrsToList (key: value: "${showKey key} = ${showValue value}") keyValues;
        in
        concatLists (
          [
            header
            lines
            (if header ++ lines == [ ] then [ ] else [ "" ])
          ]
          ++ lib.mapAttrsToList (key: showTable (path ++ [ key ])) subtables
        );
    in
    table: concatStringsSep "\n" (showTable [ ] table);

  pkgs = rec {
    inherit lib;

    # The real writeText is a derivation that also has its text as an
    # attribute, as this one does.
    writeText = name: text: {
      type = "derivation";
      inherit name text;
      outPath = storePath name text;
    };

    formats.toml = { }: {
      type = {
        description = "TOML value";
        check = isAttrs;
      };
      generate = name: value: writeText name (toTOML value);
    };

    coreutils = fakePackage "coreutils";
    python3 = fakePackage "python3";
    git = fakePackage "git";

    # Returns the arguments it was given, marked as a derivation, so the
    # test can read pname, ldflags and the src filter back.
    buildGoModule =
      args:
      if !(args ? vendorHash) then
        throw "buildGoModule stand-in: vendorHash is missing"
      else
        args
        // {
          type = "derivation";
          name = "${args.pname}-${args.version}";
          outPath = storePath "${args.pname}-${args.version}" (toJSON args.ldflags);
        };

    # Calls a function, or the file that contains one, with the arguments
    # it names from pkgs, then the given overrides, as nixpkgs does.
    callPackage =
      function: overrides:
      let
        f = if isFunction function then function else import function;
      in
      f (intersectAttrs (functionArgs f) pkgs // overrides);
  };

  # The stand-in module system: one module, option values given as an
  # attribute set, mkIf and mkMerge resolved, definitions merged.
  # Unlike NixOS, the module's config argument holds only the values of
  # options that the module declares, which is all nix/module.nix reads.
  evalModule =
    { module, values }:
    let
      showPath = concatStringsSep ".";
      isOption = value: isAttrs value && value._type or null == "option";
      isAbsent = value: isAttrs value && value._type or null == "absent";
      isPlainAttrs = value: isAttrs value && !(value ? _type) && !(value ? outPath);

      # Option values from the definitions, else the defaults. Unknown
      # options and values of the wrong type are rejected with NixOS's
      # wording.
      optionValues =
        path: declarations: definitions:
        let
          unknown = filter (name: !(declarations ? ${name})) (attrNames definitions);
          valueOf =
            name: declaration:
            let
              optionPath = showPath (path ++ [ name ]);
              definition = definitions.${name};
            in
            if !(isOption declaration) then
              optionValues (path ++ [ name ]) declaration (definitions.${name} or { })
            else if !(definitions ? ${name}) then
              declaration.default or (throw "The option `${optionPath}' is used but not defined.")
            else if declaration.type.check definition then
              definition
            else
              throw "A definition for option `${optionPath}' is not of type `${declaration.type.description}'.";
        in
        if unknown != [ ] then
          throw "The option `${showPath (path ++ [ (builtins.head unknown) ])}' does not exist."
        else
          mapAttrs valueOf declarations;

      # mkIf with a false condition leaves an absent marker, which merging
      # and the attribute walk drop.
      resolve =
        path: value:
        if isAttrs value && value._type or null == "if" then
          (if value.condition then resolve path value.content else { _type = "absent"; })
        else if isAttrs value && value._type or null == "merge" then
          foldl' (mergeDefinitions path) { } (filter (x: !(isAbsent x)) (map (resolve path) value.contents))
        else if isPlainAttrs value then
          lib.filterAttrs (_: x: !(isAbsent x)) (mapAttrs (name: resolve (path ++ [ name ])) value)
        else
          value;

      mergeDefinitions =
        path: left: right:
        mapAttrs (
          name: _:
          if !(left ? ${name}) then
            right.${name}
          else if !(right ? ${name}) then
            left.${name}
          else
            mergeValues (path ++ [ name ]) left.${name} right.${name}
        ) (left // right);

      mergeValues =
        path: left: right:
        if isPlainAttrs left && isPlainAttrs right then
          mergeDefinitions path left right
        else if isList left && isList right then
          left ++ right
        else if left == right then
          left
        else
          throw "The option `${showPath path}' has conflicting definition values.";

      evaluated = module {
        inherit lib pkgs;
        config = optionConfig;
      };
      optionConfig = optionValues [ ] evaluated.options values;
      config = mergeDefinitions [ ] optionConfig (resolve [ ] evaluated.config);
    in
    {
      inherit config;
      failedAssertions = map (a: a.message) (filter (a: !a.assertion) (config.assertions or [ ]));
    };

  # Unit file lines for one systemd.services entry, the way NixOS's
  # systemd library writes them: a list becomes one line per element,
  # booleans become true or false, and the triggers become X- keys. Unlike
  # NixOS, wantedBy is left out (NixOS turns it into symlinks) and the
  # trigger lists are written as they are, not as a hashed file.
  renderService =
    service:
    let
      showValue =
        value:
        if isBool value then
          (if value then "true" else "false")
        else
          toString value;
      keyLines =
        settings:
        concatLists (
          lib.mapAttrsToList (
            key: value: map (x: "${key}=${showValue x}") (if isList value then value else [ value ])
          ) settings
        );
      unitSettings =
        (service.unitConfig or { })
        // lib.filterAttrs (_: value: value != "") {
          Description = service.description or "";
          After = concatStringsSep " " (service.after or [ ]);
          Wants = concatStringsSep " " (service.wants or [ ]);
          X-Restart-Triggers = toString (service.restartTriggers or [ ]);
          X-Reload-Triggers = toString (service.reloadTriggers or [ ]);
        };
      environmentLines = lib.mapAttrsToList (key: value: "Environment=${toJSON "${key}=${value}"}") (
        service.environment or { }
      );
      unit = keyLines unitSettings;
      serviceSection = environmentLines ++ keyLines (service.serviceConfig or { });
    in
    {
      inherit unit;
      service = serviceSection;
      text = concatStringsSep "\n" ([ "[Unit]" ] ++ unit ++ [ "" "[Service]" ] ++ serviceSection) + "\n";
    };
in
{
  inherit
    lib
    pkgs
    evalModule
    renderService
    toTOML
    ;
}
