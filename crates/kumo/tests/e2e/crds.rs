//! Custom resources: a CRD is served as soon as it is created, its objects are stored, listed,
//! printed with the CRD's columns, validated by its schema, and removed with it.

use crate::harness::Cluster;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue]}
              tags: {type: array, items: {type: string}}
          status:
            type: object
            properties:
              ready: {type: boolean}
"#;

#[test]
fn a_crd_serves_its_custom_resources() {
    let c = Cluster::start();
    let f = c.file("crd.yaml", CRD);
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    c.kubectl(&["wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s"]);
    let w = c.file("w.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3, color: red, tags: [a, b]}\n");
    let out = c.kubectl(&["apply", "-f", w.to_str().unwrap()]);
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    let table = c.kubectl(&["get", "widgets"]);
    assert!(table.lines().next().unwrap().contains("SIZE"), "{table}");
    assert!(table.contains("w1") && table.contains('3'), "{table}");
    let short = c.kubectl(&["get", "wd", "w1", "-o", "jsonpath={.spec.tags[1]}"]);
    assert_eq!(short, "b");
    // Change through apply (a JSON merge patch for custom resources).
    let w2 = c.file("w2.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 4, color: blue}\n");
    c.kubectl(&["apply", "-f", w2.to_str().unwrap()]);
    let obj = c.get_json(&["widget", "w1"]);
    assert_eq!(obj["spec"]["size"], 4);
    assert!(obj["spec"].get("tags").is_none(), "{obj}");
    assert_eq!(obj["metadata"]["generation"], 2);
    // Schema validation.
    let bad = c.file("bad.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 0, color: green}\n");
    let err = c.kubectl_fails(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(err.contains("spec.size") && err.contains("spec.color"), "{err}");
    let missing = c.file(
        "missing.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w3}\nspec: {color: red}\n",
    );
    let err = c.kubectl_fails(&["apply", "-f", missing.to_str().unwrap()]);
    assert!(err.contains("spec.size: Required value"), "{err}");
    let unknown = c.file("unknown.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w4}\nspec: {size: 1, shape: round}\n");
    let err = c.kubectl_fails(&["apply", "-f", unknown.to_str().unwrap()]);
    assert!(err.contains("unknown field \"spec.shape\""), "{err}");
    let ex = c.kubectl(&["explain", "widget.spec"]);
    assert!(ex.contains("size") && ex.contains("color"), "{ex}");
    // Deleting the CRD removes the resource and its objects.
    c.kubectl(&["delete", "crd", "widgets.example.com"]);
    let err = c.kubectl_fails(&["get", "widgets"]);
    // kubectl's discovery cache may still list it for a moment; either way the type is gone.
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\"")
            || err.contains("could not find the requested resource"),
        "{err}"
    );
}
