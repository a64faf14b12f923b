//! The table, by part of the API.
mod calls;
mod devices;
mod files;
mod parametrize;
mod patching;
mod save;
mod swap;

use crate::Case;

pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(patching::cases());
    cases.extend(calls::cases());
    cases.extend(swap::cases());
    cases.extend(files::cases());
    cases.extend(parametrize::cases());
    cases.extend(save::cases());
    cases.extend(devices::cases());
    // ---------------------------------------------------------------------------------
    // TO ADD when they land on this branch (module trees/slots/rules, the patch-string
    // parser and registry, adapter manifests); each case as above, asserting the exact
    // variant and an unchanged fingerprint:
    //   - patch strings: bad quoting (`lora(targets="*.q)`), unknown patch name, unknown
    //     or repeated argument, argument of the wrong type or out of range;
    //   - adapter manifests: an unknown patch, a tensor the manifest does not list, a
    //     shape or dtype that disagrees with the manifest, a manifest that is not valid;
    //   - slots and rules: unpatching an unpatched slot, a rule matching nothing where one
    //     is required, a path that does not exist, stacking a patch where it is refused
    //     (a second LoRA on one slot), `apply` failing half-way (all or none).
    // ---------------------------------------------------------------------------------
    cases
}
