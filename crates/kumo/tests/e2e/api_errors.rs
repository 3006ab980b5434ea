//! Bad input over plain HTTPS: each mistake gets a Kubernetes `Status` with the right reason and
//! code and a message that says what to fix, and nothing half-written stays in the store.

use crate::harness::Cluster;
use serde_json::{json, Value};

pub fn client(c: &Cluster, with_cert: bool) -> reqwest::Client {
    let pki = c.data_dir().join("pki");
    let ca = std::fs::read(pki.join("ca.crt")).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(std::time::Duration::from_secs(20));
    if with_cert {
        let mut pem = std::fs::read(pki.join("admin.crt")).unwrap();
        pem.extend(std::fs::read(pki.join("admin.key")).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

pub fn url(c: &Cluster, path: &str) -> String {
    format!("https://{}{path}", c.addr)
}

async fn status(resp: reqwest::Response) -> (u16, Value) {
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (code, body)
}

fn assert_status(got: &(u16, Value), code: u16, reason: &str, message_part: &str) {
    let (c, body) = got;
    assert_eq!(*c, code, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let msg = body["message"].as_str().unwrap_or("");
    assert!(msg.contains(message_part), "message {msg:?} lacks {message_part:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_statuses_and_store_nothing() {
    let c = Cluster::start();
    let http = client(&c, true);
    let cms = url(&c, "/api/v1/namespaces/default/configmaps");
    let post = |body: Vec<u8>, ct: &'static str| {
        http.post(&cms).header("content-type", ct).body(body).send()
    };

    let r = status(
        post(b"{\"apiVersion\": \"v1\", \"kind\": ".to_vec(), "application/json").await.unwrap(),
    )
    .await;
    assert_status(&r, 400, "BadRequest", "not valid JSON");
    let r = status(post(b"kind: [unclosed".to_vec(), "application/yaml").await.unwrap()).await;
    assert_status(&r, 400, "BadRequest", "not valid YAML");
    let r = status(post(b"[1,2]".to_vec(), "application/json").await.unwrap()).await;
    assert_status(&r, 400, "BadRequest", "must be an object");
    let r = status(
        post(
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}})
                .to_string()
                .into_bytes(),
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_status(&r, 422, "Invalid", "a lowercase RFC 1123 subdomain");
    assert_eq!(r.1["details"]["causes"][0]["field"], "metadata.name");
    let r = status(
        post(
            json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}})
                .to_string()
                .into_bytes(),
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_status(&r, 400, "BadRequest", "does not match the expected kind");
    let r = status(
        post(
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"strict"},"bogus":1})
                .to_string()
                .into_bytes(),
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        r.0, 201,
        "without fieldValidation, unknown fields are dropped with a warning: {}",
        r.1
    );
    let strict = http
        .post(format!("{cms}?fieldValidation=Strict"))
        .header("content-type", "application/json")
        .body(
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"strict2"},"bogus":1})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let r = status(strict).await;
    assert_status(&r, 400, "BadRequest", "unknown field \"bogus\"");
    let big = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"x":"a".repeat(4 * 1024 * 1024)}});
    let r = status(post(big.to_string().into_bytes(), "application/json").await.unwrap()).await;
    assert_status(&r, 413, "RequestEntityTooLarge", "larger than the server accepts");
    // Unknown kinds and objects.
    let r = status(
        http.get(url(&c, "/apis/example.com/v1/namespaces/default/gizmos")).send().await.unwrap(),
    )
    .await;
    assert_status(&r, 404, "NotFound", "could not find the requested resource");
    let r = status(http.get(format!("{cms}/nope")).send().await.unwrap()).await;
    assert_status(&r, 404, "NotFound", "configmaps \"nope\" not found");
    assert_eq!(r.1["details"]["kind"], "configmaps");
    // Duplicate create.
    let body = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"}}).to_string();
    assert_eq!(
        post(body.clone().into_bytes(), "application/json").await.unwrap().status().as_u16(),
        201
    );
    let r = status(post(body.into_bytes(), "application/json").await.unwrap()).await;
    assert_status(&r, 409, "AlreadyExists", "configmaps \"dup\" already exists");
    // Stale update.
    let (_, cur) = status(http.get(format!("{cms}/dup")).send().await.unwrap()).await;
    let mut first = cur.clone();
    first["data"] = json!({"a": "1"});
    let ok = http.put(format!("{cms}/dup")).json(&first).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let mut stale = cur.clone();
    stale["data"] = json!({"a": "2"});
    let r = status(http.put(format!("{cms}/dup")).json(&stale).send().await.unwrap()).await;
    assert_status(&r, 409, "Conflict", "the object has been modified");
    // Bad selectors and parameters.
    let r = status(http.get(format!("{cms}?labelSelector=a%20in%20(")).send().await.unwrap()).await;
    assert_eq!(r.0, 400, "{}", r.1);
    let r =
        status(http.get(format!("{cms}?fieldSelector=spec.nodeName%3Dx")).send().await.unwrap())
            .await;
    assert_status(&r, 400, "BadRequest", "field label not supported: spec.nodeName");
    let r = status(
        http.patch(format!("{cms}/dup"))
            .header("content-type", "application/json-patch+json")
            .body("[{\"op\":\"replace\",\"path\":\"/data/missing/x\",\"value\":1}]")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.0, 400, "{}", r.1);
    let r = status(
        http.patch(format!("{cms}/dup"))
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_status(&r, 415, "UnsupportedMediaType", "unknown format");
    // Nothing half-written: exactly the objects that were accepted exist.
    let (_, list) = status(http.get(&cms).send().await.unwrap()).await;
    let mut names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["dup", "strict"]);
    let (_, dup) = status(http.get(format!("{cms}/dup")).send().await.unwrap()).await;
    assert_eq!(dup["data"]["a"], "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_requests_get_401_and_tokens_work() {
    let c = Cluster::start();
    let anon = client(&c, false);
    let r = status(anon.get(url(&c, "/api/v1/namespaces")).send().await.unwrap()).await;
    assert_status(&r, 401, "Unauthorized", "Unauthorized");
    let r = anon.get(url(&c, "/version")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let token = std::fs::read_to_string(c.data_dir().join("pki/token")).unwrap();
    let r = anon.get(url(&c, "/api/v1/namespaces")).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r =
        status(anon.get(url(&c, "/api/v1/namespaces")).bearer_auth("wrong").send().await.unwrap())
            .await;
    assert_status(&r, 401, "Unauthorized", "Unauthorized");
}
