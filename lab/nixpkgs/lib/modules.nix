# evalModules: collects the modules (following imports, each module once),
# calls each with { config, lib, pkgs, options, modulesPath, ... } and
# merges their definitions into config, lazily (config is a fixpoint).
#
# Merging follows lib/modules.nix: mkIf and mkOverride are pushed down into
# attribute sets; at a value, definitions whose conditions are false are
# dropped, then only those of the highest priority (lowest number) count;
# lists concatenate, attribute sets merge, other values must all be equal
# or it is an error naming the option. An attribute whose definitions are
# all conditioned away is absent.
{ lib }:
{ modules, specialArgs ? { }, pkgs ? { }, system ? "x86_64-linux" }:
let
  b = builtins;
  inherit (lib) attrNames concatMap filter foldl' head length all any elem;

  isProp = v: b.isAttrs v && v ? _type && elem v._type [ "if" "merge" "override" "order" ];
  isPlainAttrs = v: b.isAttrs v && !(v ? _type) && !(v ? outPath);

  # A definition: its value, its priority and the conditions it is under.
  flatten = prio: conds: v:
    if isProp v then
      (if v._type == "merge" then concatMap (flatten prio conds) v.contents
      else if v._type == "if" then flatten prio (conds ++ [ v.condition ]) v.content
      else if v._type == "override" then flatten v.priority conds v.content
      else flatten prio conds v.content)
    else [ { value = v; inherit prio conds; } ];

  # active: whether a definition's conditions all hold. Unconditioned
  # definitions need no evaluation of config, so they are tried first.
  active = d: all (c: c) d.conds;
  anyActive = defs: any (d: d.conds == [ ]) defs || any active defs;

  # Below the top, definitions whose conditions do not hold are dropped
  # before their values are looked at (a value under a false mkIf may not
  # evaluate); at the top, conditions are pushed down, so that a module's
  # `config = mkIf cfg.enable { … }` does not need config to find config.
  mergeDefs = path: defs0:
    # (An attribute set's conditions go on down to its children, as
    # pushDownProperties does: looking at them here would need config to
    # find config, for a module's own `config = mkIf cfg.enable { … }`.)
    let defs = if path == [ ] then defs0 else filter (d: isPlainAttrs d.value || active d) defs0; in
    if defs != [ ] && all (d: isPlainAttrs d.value) defs then
      let
        names = lib.unique (concatMap (d: attrNames d.value) defs);
        childDefs = n: concatMap (d: if d.value ? ${n} then flatten d.prio d.conds d.value.${n} else [ ]) defs;
        present = filter (n: anyActive (childDefs n)) names;
      in
      lib.genAttrs present (n: mergeDefs (path ++ [ n ]) (childDefs n))
    else
      let
        act = filter active defs;
        prio = foldl' (m: d: if d.prio < m then d.prio else m) 100000 act;
        top = filter (d: d.prio == prio) act;
        name = lib.concatStringsSep "." path;
      in
      if top == [ ] then throw "The option `${name}' is used but not defined."
      else if all (d: b.isList d.value) top then concatMap (d: d.value) top
      else if all (d: isPlainAttrs d.value) top then mergeDefs path top
      else if length top == 1 || all (d: d.value == (head top).value) top then (head top).value
      else throw "The option `${name}' has conflicting definition values: ${lib.concatMapStringsSep ", " (d: b.toJSON d.value) top}";

  # Every module once, in order, with its file for messages.
  load = m:
    if b.isPath m || b.isString m then { key = toString m; file = toString m; fn = import m; }
    else { key = null; file = "<unknown>"; fn = m; };

  args = specialArgs // { inherit config lib options pkgs; };
  call = f:
    if b.isFunction f then
      let fa = b.functionArgs f; in f (if fa == { } then args else b.intersectAttrs fa args)
    else f;

  collect = seen: ms:
    foldl' (acc: m:
      let l = load m; in
      if l.key != null && elem l.key acc.seen then acc
      else
        let
          body = call l.fn;
          imports = body.imports or [ ];
          isFull = body ? config || body ? options;
          cfg = if isFull then body.config or { } else removeAttrs body [ "imports" "options" "_file" "key" "meta" "disabledModules" "freeformType" ];
          sub = collect (acc.seen ++ lib.optional (l.key != null) l.key) (map (i: if b.isPath i || b.isString i then i else i) imports);
        in
        { seen = sub.seen; defs = acc.defs ++ [ cfg ] ++ sub.defs; }
    ) { inherit seen; defs = [ ]; } ms;

  collected = collect [ ] modules;
  config = mergeDefs [ ] (concatMap (flatten 100 [ ]) collected.defs);
  options = { };
in
{
  inherit config options pkgs;
  _module.args = args;
}
