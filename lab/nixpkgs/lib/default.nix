# The stand-in's lib: the functions NixOS configurations commonly call, and
# a module evaluator that merges definitions as lib/modules.nix does for
# the option types a configuration uses (attribute sets merge, lists
# concatenate, other values must agree), without option declarations.
{ nixpkgs }:
let
  b = builtins;

  lib = rec {
    inherit (b) attrNames attrValues elem filter foldl' head tail length
      map mapAttrs concatLists concatStringsSep listToAttrs hasAttr isAttrs
      isList isString isFunction isBool toJSON fromJSON readFile pathExists
      replaceStrings substring stringLength match split toString;

    id = x: x;
    const = x: _: x;
    flip = f: a: c: f c a;
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: xs: if c then xs else [ ];
    optionalString = c: s: if c then s else "";
    optionalAttrs = c: a: if c then a else { };
    genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
    genList' = xs: b.genList (i: { inherit i; e = b.elemAt xs i; }) (length xs);
    genList = b.genList;
    nameValuePair = name: value: { inherit name value; };
    mapAttrsToList = f: a: map (n: f n a.${n}) (attrNames a);
    mapAttrs' = f: a: listToAttrs (mapAttrsToList f a);
    filterAttrs = p: a: listToAttrs (b.concatMap (n: if p n a.${n} then [ { name = n; value = a.${n}; } ] else [ ]) (attrNames a));
    concatMap = b.concatMap;
    concatMapStrings = f: xs: concatStringsSep "" (map f xs);
    concatMapStringsSep = sep: f: xs: concatStringsSep sep (map f xs);
    concatStrings = concatStringsSep "";
    unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
    all = b.all;
    any = b.any;
    hasPrefix = p: s: substring 0 (stringLength p) s == p;
    hasSuffix = sfx: s: let ls = stringLength s; lx = stringLength sfx; in lx <= ls && substring (ls - lx) lx s == sfx;
    removePrefix = p: s: if hasPrefix p s then substring (stringLength p) (stringLength s - stringLength p) s else s;
    removeSuffix = sfx: s: if hasSuffix sfx s then substring 0 (stringLength s - stringLength sfx) s else s;
    fileContents = f: removeSuffix "\n" (readFile f);
    escapeShellArg = s: "'" + replaceStrings [ "'" ] [ "'\\''" ] (toString s) + "'";
    escapeShellArgs = xs: concatStringsSep " " (map escapeShellArg xs);
    boolToString = x: if x then "true" else "false";
    attrByPath = path: default: set:
      if path == [ ] then set
      else if isAttrs set && set ? ${head path} then attrByPath (tail path) default set.${head path}
      else default;
    recursiveUpdate = a: c: a // mapAttrs (n: v: if isAttrs v && a ? ${n} && isAttrs a.${n} then recursiveUpdate a.${n} v else v) c;
    versions.majorMinor = v: let p = b.splitVersion v; in "${b.elemAt p 0}.${b.elemAt p 1}";
    trivial.release = "25.05";
    # What version.nix takes from the nixpkgs flake itself (its flake.nix
    # sets system.nixos.versionSuffix and revision from self).
    nixpkgsRevision = nixpkgs.rev or null;
    versionSuffix = if nixpkgs ? lastModifiedDate
      then ".${substring 0 8 nixpkgs.lastModifiedDate}.${nixpkgs.shortRev or "dirty"}"
      else ".00000000.dirty";

    # Properties, as lib/modules.nix has them.
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkOptionDefault = mkOverride 1500;
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;
    mkVMOverride = mkOverride 10;
    mkBefore = content: { _type = "order"; priority = 500; inherit content; };
    mkAfter = content: { _type = "order"; priority = 1500; inherit content; };

    # Declarations are not checked: options are what the modules set.
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: mkOption { default = false; description = "Whether to enable ${name}."; };
    mkPackageOption = _: name: _: mkOption { description = name; };
    types = let t = name: { inherit name; }; f = name: _: t name; in {
      str = t "str"; bool = t "bool"; int = t "int"; path = t "path"; package = t "package";
      lines = t "lines"; port = t "port"; anything = t "anything"; raw = t "raw";
      listOf = f "listOf"; attrsOf = f "attrsOf"; nullOr = f "nullOr"; submodule = f "submodule";
      either = a: _: t "either"; enum = f "enum"; oneOf = f "oneOf";
    };

    evalModules = import ./modules.nix { inherit lib; };

    # nixpkgs' lib.nixosSystem: the modules, NixOS's own (../nixos/modules),
    # evaluated into config.system.build.toplevel.
    nixosSystem = { system ? "x86_64-linux", modules ? [ ], specialArgs ? { }, ... }:
      let
        pkgs = import ../pkgs { inherit lib system; };
      in
      evalModules {
        modules = [ ../nixos/modules ] ++ modules;
        specialArgs = { inherit pkgs; modulesPath = ../nixos/modules; } // specialArgs;
        inherit pkgs system;
      };
  };
in
lib
