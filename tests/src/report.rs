//! How the benchmark programs print their results: one JSON object per
//! scenario (`--json`), or one readable `name: key=value ...` line.

use std::io::Write;

use serde_json::{Map, Value};

/// `x` rounded to `places` decimals.
pub fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// Prints one scenario's result and flushes, so a long run shows progress.
/// Null fields are left out of the readable line.
pub fn print(name: &str, fields: Map<String, Value>, as_json: bool) {
    if as_json {
        let mut line = Map::new();
        line.insert("scenario".into(), name.into());
        line.extend(fields);
        println!("{}", Value::Object(line));
    } else {
        let parts: Vec<String> = fields
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                _ => format!("{k}={v}"),
            })
            .collect();
        println!("{name}: {}", parts.join(" "));
    }
    let _ = std::io::stdout().flush();
}
