//! The table, by part of the API.
mod calls;
mod devices;
mod files;
mod parametrize;
mod patch_strings;
mod patching;
mod rules;
mod save;
mod slots;
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
    cases.extend(patch_strings::cases());
    cases.extend(rules::cases());
    cases.extend(slots::cases());
    // ---------------------------------------------------------------------------------
    // TO ADD when adapter files and their manifest parser land on this branch (they are
    // written in another worktree): each case as above, asserting the exact variant and an
    // unchanged fingerprint of the net, the tree and the VarStore:
    //   - a manifest naming an unknown patch (with its nearest name);
    //   - a tensor in the file that the manifest does not list, and one it lists that the
    //     file lacks;
    //   - a shape or dtype that disagrees with the manifest;
    //   - a manifest that is not valid (syntax, missing fields, a bad patch string in it);
    //   - loading an adapter onto a tree whose slots its targets do not match.
    // ---------------------------------------------------------------------------------
    cases
}
