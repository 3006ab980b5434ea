//! Write operations and their preconditions, decided once for every backend.
//!
//! A backend reads the key's current value, calls [`WriteOp::apply`] with the revision the write
//! would get, and on success stores `event.kv` (Put) or removes the key (Delete). Keeping the
//! decision here is what makes `MemStore` and `EmbeddedStore` agree to the letter.

use crate::{EventKind, KeyValue, Revision, StoreError, WatchEvent};

/// One requested write.
#[derive(Debug)]
pub(crate) enum WriteOp {
    /// Create if absent.
    Create { key: String, value: Vec<u8> },
    /// Replace if present (and at `expected`, when given).
    Update { key: String, value: Vec<u8>, expected: Option<Revision> },
    /// Remove if present (and at `expected`, when given).
    Delete { key: String, expected: Option<Revision> },
}

impl WriteOp {
    /// The key this op writes.
    pub(crate) fn key(&self) -> &str {
        match self {
            WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. } => key,
        }
    }

    /// Checks the precondition against `current` and, if it holds, returns the event this write
    /// produces at `revision`. The caller returns `event.kv` to the writer.
    pub(crate) fn apply(
        self,
        current: Option<KeyValue>,
        revision: Revision,
    ) -> Result<WatchEvent, StoreError> {
        match (self, current) {
            (WriteOp::Create { key, .. }, Some(_)) => Err(StoreError::AlreadyExists(key)),
            (WriteOp::Create { key, value }, None) => Ok(WatchEvent {
                kind: EventKind::Put,
                kv: KeyValue { key, value, create_revision: revision, mod_revision: revision },
                prev: None,
            }),
            (WriteOp::Update { key, .. } | WriteOp::Delete { key, .. }, None) => {
                Err(StoreError::NotFound(key))
            }
            (WriteOp::Update { key, value, expected }, Some(prev)) => {
                check_expected(&key, expected, &prev)?;
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: prev.create_revision,
                    mod_revision: revision,
                };
                Ok(WatchEvent { kind: EventKind::Put, kv, prev: Some(prev) })
            }
            (WriteOp::Delete { key, expected }, Some(prev)) => {
                check_expected(&key, expected, &prev)?;
                let kv = KeyValue { mod_revision: revision, ..prev.clone() };
                Ok(WatchEvent { kind: EventKind::Delete, kv, prev: Some(prev) })
            }
        }
    }
}

fn check_expected(
    key: &str,
    expected: Option<Revision>,
    prev: &KeyValue,
) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != prev.mod_revision => {
            Err(StoreError::Conflict { key: key.to_owned(), expected, actual: prev.mod_revision })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kv(rev: Revision) -> KeyValue {
        KeyValue { key: "k".into(), value: b"old".to_vec(), create_revision: 2, mod_revision: rev }
    }

    #[test]
    fn create_on_present_key_is_already_exists() {
        let op = WriteOp::Create { key: "k".into(), value: vec![] };
        assert_eq!(op.apply(Some(kv(2)), 3).unwrap_err(), StoreError::AlreadyExists("k".into()));
    }

    #[test]
    fn update_keeps_create_revision_and_reports_prev() {
        let op = WriteOp::Update { key: "k".into(), value: b"new".to_vec(), expected: Some(5) };
        let ev = op.apply(Some(kv(5)), 9).unwrap();
        assert_eq!((ev.kv.create_revision, ev.kv.mod_revision), (2, 9));
        assert_eq!(ev.prev, Some(kv(5)));
    }

    #[test]
    fn stale_expected_revision_is_conflict() {
        let op = WriteOp::Delete { key: "k".into(), expected: Some(4) };
        let err = op.apply(Some(kv(5)), 9).unwrap_err();
        assert_eq!(err, StoreError::Conflict { key: "k".into(), expected: 4, actual: 5 });
    }

    #[test]
    fn delete_returns_old_value_at_delete_revision() {
        let op = WriteOp::Delete { key: "k".into(), expected: None };
        let ev = op.apply(Some(kv(5)), 9).unwrap();
        assert_eq!(ev.kind, EventKind::Delete);
        assert_eq!((ev.kv.value.as_slice(), ev.kv.mod_revision), (&b"old"[..], 9));
    }
}
