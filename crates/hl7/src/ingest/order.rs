//! Messages about the same patient are applied one at a time, in the order they arrived,
//! whichever connection brought them: a message holds its patients' turns (every identifier
//! of PID-3, PID-2, PID-4 and MRG-1, and its own control id) from the duplicate check to the
//! record that it was applied. Turns are fair (first come, first served) and taken in one
//! global order, so two messages never wait on each other. Keys are keyed digests (the
//! vault's derived ids): no identifier is held in the clear.
use crate::parse::{Message, Segment};
use phivault_vault::{Ctx, Vault};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use tokio::sync::{Mutex as Turn, OwnedMutexGuard};

/// The most turns one message takes (identifiers beyond are rare and only lose ordering).
const MAX_KEYS: usize = 16;
/// Above this many entries, turns nobody holds are dropped from the table.
const SWEEP_AT: usize = 4096;

static TURNS: LazyLock<Mutex<HashMap<String, Weak<Turn<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The turns a message holds until dropped.
pub(crate) struct Held {
    _guards: Vec<OwnedMutexGuard<()>>,
}

/// The identifier values (with their assigning authority) of the patient fields of a segment.
fn identifier_inputs(seg: &Segment, fields: &[usize], out: &mut Vec<String>) {
    for &field in fields {
        for rep in 1..=seg.repetitions(field) {
            if let Some(value) = seg.get(field, rep, 1, 1).filter(|v| *v != "\"\"") {
                let system = seg.get(field, rep, 4, 1).unwrap_or("");
                out.push(format!("patient\u{1f}{system}\u{1f}{value}"));
            }
        }
    }
}

/// The keys a message waits its turn on.
fn keys(vault: &Vault, ctx: &Ctx, msg: &Message, sender: &str) -> Vec<String> {
    let mut inputs = vec![format!("message\u{1f}{sender}\u{1f}{}", msg.control_id())];
    if let Some(pid) = msg.segment("PID") {
        identifier_inputs(pid, &[3, 2, 4], &mut inputs);
    }
    if let Some(mrg) = msg.segment("MRG") {
        identifier_inputs(mrg, &[1], &mut inputs);
    }
    inputs.truncate(MAX_KEYS);
    let mut keys: Vec<String> = inputs
        .iter()
        .map(|i| vault.derived_id(ctx, "hl7-turn", i).as_str().to_owned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn turn(key: String) -> Arc<Turn<()>> {
    let mut table = TURNS.lock().unwrap_or_else(PoisonError::into_inner);
    if table.len() > SWEEP_AT {
        table.retain(|_, t| t.strong_count() > 0);
    }
    if let Some(t) = table.get(&key).and_then(Weak::upgrade) {
        return t;
    }
    let t = Arc::new(Turn::new(()));
    table.insert(key, Arc::downgrade(&t));
    t
}

/// Waits for the message's turn on each of its patients (in key order).
pub(crate) async fn wait_turn(vault: &Vault, ctx: &Ctx, msg: &Message, sender: &str) -> Held {
    let mut guards = Vec::new();
    for key in keys(vault, ctx, msg, sender) {
        guards.push(turn(key).lock_owned().await);
    }
    Held { _guards: guards }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_turn_is_shared_while_held_and_dropped_when_free() {
        let a = turn("k1".into());
        let b = turn("k1".into());
        assert!(
            Arc::ptr_eq(&a, &b),
            "one turn per key while someone holds it"
        );
        let g = a.clone().try_lock_owned().unwrap();
        assert!(b.clone().try_lock_owned().is_err(), "held: the next waits");
        drop(g);
        assert!(b.clone().try_lock_owned().is_ok());
        drop((a, b));
        let c = turn("k1".into());
        assert_eq!(
            Arc::strong_count(&c),
            1,
            "a fresh turn once nobody held the old"
        );
    }
}
