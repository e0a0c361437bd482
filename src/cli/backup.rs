//! `moverctl backup FILE` and `moverctl restore FILE`: an agent's
//! configuration backup (`agent::backup`) kept as a JSON file on the
//! operator's side, as the manual keeps the HVM configuration backup on the
//! management console. Back up the source and the destination together,
//! before and after migrations; restore both together.

use super::session::{Failure, Global, print_reply};
use crate::control::{Client, reply, request};
use std::io::Write;
use std::path::Path;

/// `backup`: the agent's backup written to `file` (private to its owner).
pub fn backup(g: &Global, client: &mut Client, file: &Path) -> Result<(), Failure> {
    let b = client
        .request(request::Backup {})
        .map_err(Failure::Refused)?;
    let bytes = serde_json::to_vec_pretty(&b).expect("a backup serialises");
    let written = crate::partition::host::private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(file)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()));
    written.map_err(|e| Failure::Usage(format!("cannot write {}: {e}", file.display())))?;
    if g.json {
        return print_reply(
            g,
            &serde_json::json!({
                "host": b.host,
                "file": file,
                "taken_unix_s": b.taken_unix_s,
                "lpars": b.lpars.iter().map(|l| &l.name).collect::<Vec<_>>(),
            }),
        );
    }
    println!(
        "backed up host {}: {} LPAR(s) to {}",
        b.host,
        b.lpars.len(),
        file.display()
    );
    Ok(())
}

/// `restore`: `file` (a `backup`) sent back to its agent.
pub fn restore(g: &Global, client: &mut Client, file: &Path) -> Result<(), Failure> {
    let bytes = std::fs::read(file)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
    let backup: reply::AgentBackup = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::Usage(format!("{} is not a moverctl backup: {e}", file.display())))?;
    let r = client
        .request(request::Restore { backup })
        .map_err(Failure::Refused)?;
    if g.json {
        return print_reply(g, &r);
    }
    println!(
        "restored host {}: {} LPAR(s), all deactivated ({} defined afresh, {} deleted)",
        r.host,
        r.lpars.len(),
        r.redefined.len(),
        r.removed.len()
    );
    Ok(())
}
