#!/usr/bin/env python3
"""Lists every public path of the tch-patch crate and fails when an item has two.

Reads rustdoc's JSON output of the crate (`target/doc/tch_patch.json`, written by
`cargo rustdoc --lib -- -Z unstable-options --output-format json`; `make public-paths` runs
it with RUSTC_BOOTSTRAP=1 on the stable toolchain). Walks the modules from the crate root,
following `pub use` re-exports, and records each item's paths. Paths under `prelude` are
the one allowed second path (the prelude exists to repeat names). Hidden items
(`#[doc(hidden)]`, e.g. `__private`) are not in rustdoc's output at all.

  public_paths.py JSON           print the paths; exit 1 on an item with two paths
  public_paths.py JSON --check F also exit 1 when the list differs from file F
  public_paths.py JSON --write F write the list to F
"""
import json
import sys
from collections import defaultdict

KINDS = {"module", "struct", "enum", "trait", "function", "macro", "proc_macro",
         "constant", "static", "type_alias", "union", "trait_alias", "primitive"}


def walk(doc):
    index = doc["index"]
    root = index[str(doc["root"])] if str(doc["root"]) in index else index[doc["root"]]
    crate = root["name"]
    paths = defaultdict(list)  # item id -> paths
    kinds = {}

    def item(id_):
        return index.get(str(id_)) if isinstance(index, dict) else None

    def visit_module(module, prefix, seen):
        for child in module["inner"]["module"]["items"]:
            node = item(child)
            if node is None or node.get("visibility") != "public":
                continue
            inner = node["inner"]
            if "use" in inner:
                use = inner["use"]
                target = item(use["id"]) if use["id"] is not None else None
                if use["is_glob"]:
                    if target is not None and "module" in target["inner"]:
                        visit_module(target, prefix, seen)
                    continue
                record(use["id"], target, prefix + [use["name"]], seen)
            else:
                record(child, node, prefix + [node["name"]], seen)

    def record(id_, node, path, seen):
        if node is not None:
            kind = next(iter(node["inner"]))
        else:  # an item of another crate (the macros): rustdoc knows only its path and kind
            kind = doc["paths"].get(str(id_), {}).get("kind", "external")
        if node is not None and kind not in KINDS:
            return
        paths[id_].append("::".join(path))
        kinds[id_] = kind
        if node is not None and kind == "module" and id_ not in seen:
            visit_module(node, path, seen | {id_})

    visit_module(root, [crate], {doc["root"]})
    return paths, kinds


def main():
    doc = json.load(open(sys.argv[1]))
    paths, kinds = walk(doc)
    lines = sorted(f"{p} ({kinds[i]})" for i, ps in paths.items() for p in ps)
    duplicates = []
    for id_, ps in paths.items():
        outside_prelude = [p for p in ps if "::prelude::" not in p]
        if len(outside_prelude) > 1:
            duplicates.append(sorted(outside_prelude))
    text = "\n".join(lines) + "\n"
    if "--write" in sys.argv:
        open(sys.argv[sys.argv.index("--write") + 1], "w").write(text)
    else:
        sys.stdout.write(text)
    status = 0
    for group in sorted(duplicates):
        print("one item, several public paths: " + ", ".join(group), file=sys.stderr)
        status = 1
    if "--check" in sys.argv:
        expected = open(sys.argv[sys.argv.index("--check") + 1]).read()
        if expected != text:
            print("the public API differs from " + sys.argv[sys.argv.index("--check") + 1]
                  + ": run `make public-paths` and review the diff", file=sys.stderr)
            status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
