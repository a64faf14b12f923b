//! The table, by part of the API.
mod adapters;
mod calls;
mod devices;
mod files;
mod load_modes;
mod nodes;
mod parametrize;
mod patch_strings;
mod patching;
mod peft;
mod rules;
mod save;
mod slots;
mod swap;

use crate::Case;

pub(crate) fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(patching::cases());
    cases.extend(calls::cases());
    cases.extend(swap::cases());
    cases.extend(files::cases());
    cases.extend(load_modes::cases());
    cases.extend(parametrize::cases());
    cases.extend(save::cases());
    cases.extend(devices::cases());
    cases.extend(patch_strings::cases());
    cases.extend(rules::cases());
    cases.extend(slots::cases());
    cases.extend(adapters::cases());
    cases.extend(peft::cases());
    cases.extend(nodes::cases());
    cases
}
