//! The JSON-RPC 2.0 envelope: requests, responses, notifications and the
//! error codes. Kept apart from the methods so that framing errors (bad JSON,
//! a missing `method`) are answered the same way whatever was asked.
//!
//! Codes -32700..-32600 are JSON-RPC's own. The relay's are in the range the
//! spec leaves to servers (-32000..-32099); see [`code`].

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The only `jsonrpc` value either end sends or accepts.
pub const JSONRPC: &str = "2.0";

/// Error codes. Every error a client can see is one of these, so a sidecar
/// can branch on the code and show the message.
pub mod code {
    /// The line is not JSON. The connection stays usable.
    pub const PARSE_ERROR: i32 = -32700;
    /// Valid JSON but not a request: not an object, a batch, no `method`,
    /// `jsonrpc` not "2.0", or a line over [`MAX_LINE`](crate::MAX_LINE).
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// The message names the field and what was expected.
    pub const INVALID_PARAMS: i32 = -32602;
    /// A bug or an unexpected failure inside the relay.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// The peer speaks a major protocol version this end does not.
    pub const UNSUPPORTED_VERSION: i32 = -32000;
    /// The relay is stopping: the request was not run. Reconnect later.
    pub const SHUTTING_DOWN: i32 = -32001;
    /// The server already serves its maximum number of control clients;
    /// sent instead of the greeting, then the connection is closed.
    pub const TOO_MANY_CLIENTS: i32 = -32002;
    /// A subscriber fell too far behind the event stream; sent just before
    /// the connection is closed. Resume from the last sequence number seen.
    pub const SUBSCRIBER_TOO_SLOW: i32 = -32003;
    /// The relay did not take or answer the request within the server's
    /// request timeout. It may still run; retry reads, check writes.
    pub const RELAY_BUSY: i32 = -32004;
    /// `subscribe` on a connection that already has a subscription.
    pub const ALREADY_SUBSCRIBED: i32 = -32005;
    /// The method needs a role this connection does not have (a read-only
    /// client called `shutdown`, say). Nothing was run; the message names
    /// the method and both roles. The connection stays usable.
    pub const PERMISSION_DENIED: i32 = -32006;
    /// The client sent no request for the server's idle timeout and is not
    /// subscribed; sent as a goodbye just before the connection is closed.
    /// The request it may have been about to send was not run: reconnect
    /// and send it again.
    pub const IDLE_TIMEOUT: i32 = -32007;
    /// The relay tried and failed: a snapshot could not be written, an ACL
    /// change could not be persisted. The message says what and where.
    pub const OPERATION_FAILED: i32 = -32010;
}

/// The `error` member of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i32,
    pub message: String,
    /// Boxed: errors travel in `Result`s everywhere and should stay small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<Value>>,
}

impl RpcError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(Box::new(data));
        self
    }

    pub fn parse_error(detail: impl fmt::Display) -> Self {
        Self::new(code::PARSE_ERROR, format!("parse error: {detail}"))
    }

    pub fn invalid_request(detail: impl fmt::Display) -> Self {
        Self::new(code::INVALID_REQUEST, format!("invalid request: {detail}"))
    }

    pub fn internal(detail: impl fmt::Display) -> Self {
        Self::new(code::INTERNAL_ERROR, format!("internal error: {detail}"))
    }

    /// For [`code::OPERATION_FAILED`]: the relay tried and could not.
    pub fn failed(detail: impl fmt::Display) -> Self {
        Self::new(code::OPERATION_FAILED, detail.to_string())
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}

/// A request (with `id`) or a notification (without). Ids are whatever the
/// client sent — a number, a string or null — and are echoed unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl Request {
    pub fn new(id: Option<Value>, method: &str, params: Option<Value>) -> Self {
        Self {
            jsonrpc: JSONRPC.into(),
            id,
            method: method.into(),
            params,
        }
    }

    /// Reads one request line as strictly as the spec asks. On failure,
    /// returns the id to answer with (null when it could not be read).
    pub fn parse(line: &[u8]) -> Result<Self, (Value, RpcError)> {
        let value: Value =
            serde_json::from_slice(line).map_err(|e| (Value::Null, RpcError::parse_error(e)))?;
        let mut object = match value {
            Value::Object(object) => object,
            Value::Array(_) => {
                return Err((
                    Value::Null,
                    RpcError::invalid_request("batches are not supported"),
                ))
            }
            other => {
                let what = kind_of(&other);
                return Err((
                    Value::Null,
                    RpcError::invalid_request(format!("expected a JSON object, got {what}")),
                ));
            }
        };
        let id = object.remove("id");
        let echo = match &id {
            Some(id @ (Value::Number(_) | Value::String(_) | Value::Null)) => id.clone(),
            Some(other) => {
                let what = kind_of(other);
                return Err((
                    Value::Null,
                    RpcError::invalid_request(format!(
                        "\"id\" must be a number, a string or null, got {what}"
                    )),
                ));
            }
            None => Value::Null,
        };
        let fail = |detail: String| (echo.clone(), RpcError::invalid_request(detail));
        match object.remove("jsonrpc") {
            Some(Value::String(v)) if v == JSONRPC => {}
            Some(other) => return Err(fail(format!("\"jsonrpc\" must be \"2.0\", got {other}"))),
            None => return Err(fail("missing \"jsonrpc\": \"2.0\"".into())),
        }
        let method = match object.remove("method") {
            Some(Value::String(m)) => m,
            Some(other) => {
                let what = kind_of(&other);
                return Err(fail(format!("\"method\" must be a string, got {what}")));
            }
            None => return Err(fail("missing \"method\"".into())),
        };
        let params = object.remove("params");
        if let Some(field) = object.keys().next() {
            return Err(fail(format!(
                "unknown member {field:?}; a request has jsonrpc, id, method, params"
            )));
        }
        Ok(Self {
            jsonrpc: JSONRPC.into(),
            id,
            method,
            params,
        })
    }
}

/// A response: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    pub id: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    pub fn new(id: Value, outcome: Result<Value, RpcError>) -> Self {
        let (result, error) = match outcome {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        Self {
            jsonrpc: JSONRPC.into(),
            id,
            result,
            error,
        }
    }
}

/// Anything the client reads: the server's responses and its notifications
/// (the greeting, events).
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Response(Response),
    Notification { method: String, params: Value },
}

impl Incoming {
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(mut object) = value else {
            return Err(format!("expected a JSON object, got {}", kind_of(&value)));
        };
        if let Some(method) = object.remove("method") {
            let Value::String(method) = method else {
                return Err("\"method\" is not a string".into());
            };
            let params = object.remove("params").unwrap_or(Value::Null);
            return Ok(Self::Notification { method, params });
        }
        serde_json::from_value(Value::Object(object))
            .map(Self::Response)
            .map_err(|e| format!("malformed response: {e}"))
    }
}

/// One line (newline included) ready for the socket.
pub fn line<T: Serialize>(message: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(message).expect("protocol messages always serialize");
    bytes.push(b'\n');
    bytes
}

/// A notification line: a request without an id.
pub fn notification<T: Serialize>(method: &str, params: &T) -> Vec<u8> {
    let params = serde_json::to_value(params).expect("protocol messages always serialize");
    line(&Request::new(None, method, Some(params)))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Params as an object: absent and null both mean "no params". The error
/// is the detail for a -32602 message.
pub(crate) fn params_object(params: Option<Value>) -> Result<Map<String, Value>, String> {
    match params {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(object)) => Ok(object),
        Some(other) => Err(format!(
            "params must be an object (by name), got {}",
            kind_of(&other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_err(line: &str) -> (Value, RpcError) {
        Request::parse(line.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_request_and_a_notification_parse() {
        let r = Request::parse(br#"{"jsonrpc":"2.0","id":7,"method":"status"}"#).unwrap();
        assert_eq!((r.id, r.method.as_str()), (Some(json!(7)), "status"));
        let n = Request::parse(br#"{"jsonrpc":"2.0","method":"hello","params":{}}"#).unwrap();
        assert_eq!(n.id, None);
    }

    #[test]
    fn bad_json_is_a_parse_error_with_a_null_id() {
        let (id, e) = parse_err("{\"jsonrpc\":");
        assert_eq!((id, e.code), (Value::Null, code::PARSE_ERROR));
    }

    #[test]
    fn malformed_requests_are_invalid_and_echo_the_id() {
        assert_eq!(parse_err("[1]").1.code, code::INVALID_REQUEST);
        assert_eq!(parse_err("42").1.code, code::INVALID_REQUEST);
        let (id, e) = parse_err(r#"{"jsonrpc":"1.0","id":"a","method":"x"}"#);
        assert_eq!((id, e.code), (json!("a"), code::INVALID_REQUEST));
        let (id, e) = parse_err(r#"{"jsonrpc":"2.0","id":3}"#);
        assert_eq!(id, json!(3));
        assert!(e.message.contains("missing \"method\""), "{e}");
        assert_eq!(
            parse_err(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#)
                .1
                .code,
            -32600
        );
    }

    #[test]
    fn params_must_be_by_name() {
        let e = params_object(Some(json!([1, 2]))).unwrap_err();
        assert!(e.contains("an array"), "{e}");
        assert!(params_object(None).unwrap().is_empty());
    }

    #[test]
    fn responses_carry_exactly_one_outcome() {
        let ok = serde_json::to_value(Response::new(json!(1), Ok(json!({"a": 1})))).unwrap();
        assert_eq!(ok, json!({"jsonrpc":"2.0","id":1,"result":{"a":1}}));
        let err = Response::new(json!(1), Err(RpcError::new(-32601, "nope")));
        let err = serde_json::to_value(err).unwrap();
        assert_eq!(
            err,
            json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}})
        );
    }

    #[test]
    fn incoming_lines_are_classified() {
        let n = Incoming::parse(br#"{"jsonrpc":"2.0","method":"event","params":{"seq":1}}"#);
        assert!(matches!(n, Ok(Incoming::Notification { method, .. }) if method == "event"));
        let r = Incoming::parse(br#"{"jsonrpc":"2.0","id":2,"result":null,"extra":1}"#);
        assert!(matches!(r, Ok(Incoming::Response(_))));
    }
}
