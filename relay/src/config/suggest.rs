//! Operator-facing wording of serde's errors: positions stripped where the key
//! path says more, type errors reworded as "expected …, got …", and a
//! did-you-mean for unknown keys.

/// serde_json appends " at line L column C" to its messages; the key path is a
/// better locator for type errors, and syntax errors get it reworded.
pub(super) fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Rewords serde's messages for operators and adds a did-you-mean to unknown keys.
pub(super) fn explain_serde_error(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let mut out = format!("unknown key {name:?}");
        if let Some(best) = closest(name, &candidates) {
            out.push_str(&format!(" (did you mean {best:?}?)"));
        }
        if !candidates.is_empty() {
            out.push_str(&format!("; known keys here: {}", candidates.join(", ")));
        }
        return out;
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!("expected {expected}, got {found}");
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!("expected {expected}, got {found}");
        }
    }
    msg.to_string()
}

/// The candidate nearest to `name` by edit distance, if near enough to be a typo.
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested_and_far_ones_are_not() {
        assert_eq!(
            closest("maxconnection", &["maxConnections", "minConnections"]),
            Some("maxConnections")
        );
        assert_eq!(closest("banana", &["maxConnections", "listen"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn serde_type_errors_read_expected_then_got() {
        assert_eq!(
            explain_serde_error("invalid type: string \"x\", expected a non-negative integer"),
            "expected a non-negative integer, got string \"x\""
        );
        assert_eq!(
            strip_position("trailing comma at line 3 column 1"),
            "trailing comma"
        );
    }
}
