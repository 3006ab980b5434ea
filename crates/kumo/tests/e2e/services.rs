//! Services end to end: real pods behind a Service, reached through its ClusterIP and its
//! NodePort by the node proxy; an endpoint that goes away stops getting connections.

use crate::harness::Cluster;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;

/// One HTTP/1.0 GET; the body, or None when the connection fails.
fn get(addr: &str) -> Option<String> {
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200")).then(|| body.to_string())
}

const SERVER: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["POD_NAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

#[test]
fn cluster_ips_and_node_ports_reach_every_ready_replica() {
    let c = Cluster::with_proxy(&[]);
    let script: String =
        SERVER.trim_start().lines().map(|l| format!("            {l}\n")).collect();
    let manifest = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: hello}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: hello}}}}
  template:
    metadata: {{labels: {{app: hello}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: python:3
        command: ["python3", "-c", "$(SCRIPT)"]
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - name: SCRIPT
          value: |
{script}
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: hello}}
spec:
  type: NodePort
  selector: {{app: hello}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    );
    c.kubectl_in(&["apply", "-f", "-"], &manifest);
    c.kubectl(&["rollout", "status", "deployment/hello", "--timeout=60s"]);
    let svc = c.get_json(&["service", "hello"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().expect("clusterIP").to_string();
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().expect("nodePort");
    let pods: BTreeSet<String> = c
        .kubectl(&["get", "pods", "-l", "app=hello", "-o", "jsonpath={.items[*].metadata.name}"])
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(pods.len(), 2);
    // Round robin through the ClusterIP reaches both replicas.
    let mut seen = BTreeSet::new();
    c.eventually("both replicas through the ClusterIP", Duration::from_secs(30), || {
        if let Some(body) = get(&format!("{cluster_ip}:80")) {
            seen.insert(body);
        }
        seen == pods
    });
    // The NodePort serves the same Service.
    let body = get(&format!("127.0.0.1:{node_port}")).expect("answer through the NodePort");
    assert!(pods.contains(&body), "{body}");
    // A LoadBalancer Service answers on the node's address, which its status shows.
    let lb_port = 20000 + std::process::id() % 20000;
    c.kubectl(&[
        "expose",
        "deployment/hello",
        "--name=hello-lb",
        "--type=LoadBalancer",
        &format!("--port={lb_port}"),
        "--target-port=http",
    ]);
    c.eventually("the load balancer's address", Duration::from_secs(20), || {
        let svc = c.get_json(&["service", "hello-lb"]);
        svc["status"]["loadBalancer"]["ingress"][0]["ip"] == "127.0.0.1"
            && get(&format!("127.0.0.1:{lb_port}")).is_some_and(|b| pods.contains(&b))
    });
    let wide = c.kubectl(&["get", "service", "hello-lb"]);
    assert!(wide.contains("127.0.0.1"), "EXTERNAL-IP column: {wide}");
    // The API server is reachable at the `kubernetes` Service's ClusterIP.
    std::net::TcpStream::connect_timeout(
        &"127.64.0.1:443".parse().unwrap(),
        Duration::from_secs(2),
    )
    .expect("kubernetes Service through the proxy");
    // One replica goes away: it stops getting connections.
    c.kubectl(&["scale", "deployment/hello", "--replicas=1"]);
    c.eventually("one replica left", Duration::from_secs(30), || {
        c.kubectl(&["get", "pods", "-l", "app=hello", "-o", "name"]).lines().count() == 1
    });
    let left =
        c.kubectl(&["get", "pods", "-l", "app=hello", "-o", "jsonpath={.items[0].metadata.name}"]);
    c.eventually("only the remaining replica answers", Duration::from_secs(20), || {
        (0..6).all(|_| get(&format!("{cluster_ip}:80")).as_deref() == Some(left.trim()))
    });
}
