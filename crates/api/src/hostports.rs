//! The pod annotation in which kumo's node agent publishes the host port it gave each
//! declared container port (host network mode): `{"<container>/<containerPort>": <hostPort>}`.
//! The agent writes it before starting containers (and reads it back after a restart); the
//! endpoints controller reads it so Endpoints carry the port that really answers.

use std::collections::BTreeMap;

/// `kumo.dev/host-ports`.
pub const ANNOTATION: &str = "kumo.dev/host-ports";

/// The key of one container port.
pub fn key(container: &str, container_port: i32) -> String {
    format!("{container}/{container_port}")
}

/// The map an annotation value holds (empty when it is not a JSON map of ports).
pub fn parse(value: &str) -> BTreeMap<String, u16> {
    serde_json::from_str(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let map = parse(r#"{"web/8080": 31000}"#);
        assert_eq!(map.get(&key("web", 8080)), Some(&31000));
        assert!(parse("not json").is_empty());
    }
}
