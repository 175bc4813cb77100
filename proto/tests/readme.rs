//! Every example exchange in README.md is checked against the types: each
//! request parses with the server's rules, and each result, event and
//! greeting decodes into its type and re-encodes to exactly what the README
//! shows. A README that drifts from the code fails here.

use bsv_p2p_proto::jsonrpc::{Incoming, Request};
use bsv_p2p_proto::methods::*;
use bsv_p2p_proto::{Event, Role};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// The messages of each code block, as (direction, JSON text).
fn examples() -> Vec<Vec<(char, String)>> {
    let readme = include_str!("../README.md");
    let mut blocks = Vec::new();
    let mut block: Option<Vec<(char, String)>> = None;
    for line in readme.lines() {
        if line.starts_with("```") {
            match block.take() {
                Some(b) => blocks.push(b),
                None => block = Some(Vec::new()),
            }
            continue;
        }
        let Some(b) = block.as_mut() else { continue };
        if let Some(rest) = line.strip_prefix("→ ").or_else(|| line.strip_prefix("← ")) {
            b.push((line.chars().next().unwrap(), rest.to_string()));
        } else if let Some((_, text)) = b.last_mut() {
            text.push_str(line.trim());
        }
    }
    blocks.into_iter().filter(|b| !b.is_empty()).collect()
}

fn same<T: Serialize + DeserializeOwned>(what: &str, value: Value) {
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{what}: does not decode: {e}\n{value}"));
    let back = serde_json::to_value(typed).unwrap();
    assert_eq!(back, value, "{what}: re-encodes differently");
}

fn check<M: Method>(params: Option<Value>, result: Option<Value>) {
    if let Some(params) = params {
        let parsed = parse_params::<M>(Some(params.clone()))
            .unwrap_or_else(|e| panic!("{} params: {e}\n{params}", M::NAME));
        if params.as_object().is_some_and(|o| !o.is_empty()) {
            assert_eq!(
                serde_json::to_value(parsed).unwrap(),
                params,
                "{} params",
                M::NAME
            );
        }
    }
    if let Some(result) = result {
        same::<M::Result>(M::NAME, result);
    }
}

fn check_method(method: &str, params: Option<Value>, result: Option<Value>) {
    match method {
        "hello" => check::<Hello>(params, result),
        "status" => check::<Status>(params, result),
        "stats" => check::<Stats>(params, result),
        "peers" => check::<Peers>(params, result),
        "reservations" => check::<Reservations>(params, result),
        "circuits" => check::<Circuits>(params, result),
        "subscribe" => check::<Subscribe>(params, result),
        "snapshot" => check::<Snapshot>(params, result),
        "reload" => check::<Reload>(params, result),
        "shutdown" => check::<Shutdown>(params, result),
        "acl.list" => check::<AclList>(params, result),
        "acl.add" => check::<AclAdd>(params, result),
        "acl.remove" => check::<AclRemove>(params, result),
        other => panic!("README names an unknown method {other:?}"),
    }
}

fn role_of(method: &str) -> Role {
    match method {
        "hello" => Hello::ROLE,
        "status" => Status::ROLE,
        "stats" => Stats::ROLE,
        "peers" => Peers::ROLE,
        "reservations" => Reservations::ROLE,
        "circuits" => Circuits::ROLE,
        "subscribe" => Subscribe::ROLE,
        "snapshot" => Snapshot::ROLE,
        "reload" => Reload::ROLE,
        "shutdown" => Shutdown::ROLE,
        "acl.list" => AclList::ROLE,
        "acl.add" => AclAdd::ROLE,
        "acl.remove" => AclRemove::ROLE,
        other => panic!("README names an unknown method {other:?}"),
    }
}

#[test]
fn the_methods_table_gives_each_method_its_role() {
    let readme = include_str!("../README.md");
    let mut listed = Vec::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, method, role, ..] = cells.as_slice() else {
            continue;
        };
        let Some(method) = method.strip_prefix('`').and_then(|m| m.strip_suffix('`')) else {
            continue;
        };
        if !NAMES.contains(&method) {
            continue;
        }
        assert_eq!(
            *role,
            role_of(method).as_str(),
            "README's role for {method}"
        );
        listed.push(method);
    }
    assert_eq!(
        listed, NAMES,
        "the methods table lists every method once, in order"
    );
}

#[test]
fn every_readme_example_matches_the_types() {
    let mut methods_shown = std::collections::BTreeSet::new();
    let mut kinds_shown = std::collections::BTreeSet::new();
    for block in examples() {
        let mut asked = std::collections::HashMap::new();
        for (direction, text) in block {
            let value: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON: {e}\n{text}"));
            if direction == '→' {
                let request =
                    Request::parse(text.as_bytes()).unwrap_or_else(|(_, e)| panic!("{e}\n{text}"));
                check_method(&request.method, request.params.clone(), None);
                methods_shown.insert(request.method.clone());
                asked.insert(request.id.unwrap_or_default(), request.method);
                continue;
            }
            if value.get("seq").is_some() {
                let event: Event = serde_json::from_value(value.clone()).unwrap();
                kinds_shown.insert(event.kind.name().to_string());
                same::<Event>("event", value);
                continue;
            }
            match Incoming::parse(text.as_bytes()).unwrap() {
                Incoming::Notification { method, params } if method == "hello" => {
                    same::<Greeting>("greeting", params)
                }
                Incoming::Notification { method, params } if method == EVENT => {
                    let event: Event = serde_json::from_value(params.clone()).unwrap();
                    kinds_shown.insert(event.kind.name().to_string());
                    same::<Event>("event", params)
                }
                Incoming::Notification { method, .. } => panic!("unknown notification {method}"),
                Incoming::Response(response) => {
                    if let Some(result) = response.result {
                        let method = &asked[&response.id];
                        check_method(method, None, Some(result));
                    } else {
                        assert!(response.error.is_some(), "{text}");
                    }
                }
            }
        }
    }
    for method in NAMES {
        assert!(
            methods_shown.contains(*method),
            "README shows no {method} exchange"
        );
    }
    for kind in bsv_p2p_proto::event::KINDS {
        assert!(kinds_shown.contains(*kind), "README shows no {kind} event");
    }
}

#[test]
fn the_readme_quotes_the_real_invalid_params_message() {
    let e = parse_params::<Snapshot>(Some(serde_json::json!({"path": 5}))).unwrap_err();
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&e.message),
        "README should quote: {}",
        e.message
    );
}
