//! How records sit in the redb file: table definitions and the per-key record encoding.
//!
//! A record is `create_revision (i64 LE) | mod_revision (i64 LE) | value bytes`.

use std::fmt::Display;

use redb::TableDefinition;

use crate::{KeyValue, StoreError};

/// key -> record (see the module doc).
pub(super) const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
/// Store-wide counters, written in the same transaction as the keys they describe.
pub(super) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// The revision of the last committed write (1 for an empty store).
pub(super) const REVISION: &str = "revision";

const HEADER_LEN: usize = 16;

/// The record stored for `kv` (the key itself is the table key).
pub(super) fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER_LEN + kv.value.len());
    record.extend_from_slice(&kv.create_revision.to_le_bytes());
    record.extend_from_slice(&kv.mod_revision.to_le_bytes());
    record.extend_from_slice(&kv.value);
    record
}

/// The key-value stored under `key`, or `Backend` if the record is malformed.
pub(super) fn decode(key: &str, record: &[u8]) -> Result<KeyValue, StoreError> {
    let corrupt = || StoreError::Backend(format!("corrupt record for key {key}"));
    let (create, rest) = record.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (modified, value) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision: i64::from_le_bytes(*create),
        mod_revision: i64::from_le_bytes(*modified),
    })
}

/// Wraps a redb error with what we were doing when it happened: `.map_err(backend("commit"))`.
pub(super) fn backend<E: Display>(context: &'static str) -> impl FnOnce(E) -> StoreError {
    move |err| StoreError::Backend(format!("{context}: {err}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let kv = KeyValue {
            key: "/k".into(),
            value: b"hello".to_vec(),
            create_revision: 7,
            mod_revision: i64::MAX,
        };
        assert_eq!(decode("/k", &encode(&kv)).unwrap(), kv);
    }

    #[test]
    fn short_record_is_a_backend_error_not_a_panic() {
        assert!(matches!(decode("/k", &[1, 2, 3]), Err(StoreError::Backend(_))));
    }
}
