//! The HTTP endpoints, one function each, and the one middleware that gives
//! every response the same finish: counted for `/metrics`, never cached by
//! a proxy, and a JSON body on 404 and 405.
//!
//! | route | answers |
//! | --- | --- |
//! | `/status` | the guide's `{"peerId","reservations","connections",…}` |
//! | `/health` | `{"status":"healthy","uptime","peers"}`, or 503 with a reason |
//! | `/livez` | 200 while the sidecar runs; never asks the relay |
//! | `/readyz` | 200 while the relay answers and listens, else 503 |
//! | `/metrics` | OpenMetrics or Prometheus text; scrapes succeed while the relay is down |

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};
use tide::http::mime;
use tide::{Next, Request, Response, StatusCode};

use bsv_p2p_proto::exposition::Page;
use bsv_p2p_proto::process;

use crate::guard::Gate;
use crate::link::{Link, Problem};
use crate::metrics;

pub type State = Arc<Sidecar>;

/// What every endpoint shares.
pub struct Sidecar {
    pub link: Arc<Link>,
    /// The HTTP connections, for their gauges and what was shed.
    gate: Arc<Gate>,
    started: Instant,
    scrape_errors: AtomicU64,
    /// Responses by route and status code; routes come from [`ROUTES`] or
    /// are "other", so the map stays small.
    served: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl Sidecar {
    pub fn new(link: Arc<Link>, gate: Arc<Gate>) -> Sidecar {
        Sidecar {
            link,
            gate,
            started: Instant::now(),
            scrape_errors: AtomicU64::new(0),
            served: Mutex::new(BTreeMap::new()),
        }
    }
}

const ROUTES: [&str; 5] = ["/status", "/health", "/livez", "/readyz", "/metrics"];
const ALLOW: &str = "GET, HEAD";

pub fn app(sidecar: Sidecar) -> tide::Server<State> {
    let mut app = tide::with_state(Arc::new(sidecar));
    app.with(finish);
    app.at("/status").get(status);
    app.at("/health").get(health);
    app.at("/livez").get(livez);
    app.at("/readyz").get(readyz);
    app.at("/metrics").get(metrics);
    app
}

/// The guide's shape, plus what an operator checks next: uptime, versions,
/// addresses. While the relay cannot be read the answer is 503 with the
/// body `DOWN` — the word the guide's `health-check.sh` tests for, so that
/// script reports CRITICAL as printed — or, to a client that asks for
/// JSON, `{"status":"unhealthy","reason"}`.
async fn status(req: Request<State>) -> tide::Result {
    match req.state().link.status(Instant::now()).await {
        Ok(s) => Ok(reply(
            StatusCode::Ok,
            json!({
                "peerId": s.peer_id,
                "reservations": s.counts.reservations,
                "connections": s.counts.connections,
                "peers": s.counts.peers,
                "circuits": s.counts.circuits,
                "uptime": s.uptime_secs,
                "startedAt": s.started_at,
                "version": s.version,
                "listenAddrs": s.listen_addrs,
                "announceAddrs": s.announce_addrs,
                "relayAddrs": s.relay_addrs,
            }),
        )),
        Err(problem) if wants_json(&req) => Ok(unhealthy(&problem.reason)),
        Err(_) => Ok(Response::builder(StatusCode::ServiceUnavailable)
            .content_type(mime::PLAIN)
            .body("DOWN\n")
            .build()),
    }
}

/// Healthy while the relay answers and listens on at least one address.
async fn health(req: Request<State>) -> tide::Result {
    Ok(match serving(&req).await {
        Ok((uptime, peers)) => reply(
            StatusCode::Ok,
            json!({"status": "healthy", "uptime": uptime, "peers": peers}),
        ),
        Err(reason) => unhealthy(&reason),
    })
}

/// Liveness: the sidecar answers. Restarting it would not bring a relay
/// back, so this never depends on the relay.
async fn livez(req: Request<State>) -> tide::Result {
    Ok(reply(
        StatusCode::Ok,
        json!({"status": "alive", "uptime": req.state().started.elapsed().as_secs()}),
    ))
}

/// Readiness: the relay behind this sidecar can serve bots.
async fn readyz(req: Request<State>) -> tide::Result {
    Ok(match serving(&req).await {
        Ok(_) => reply(StatusCode::Ok, json!({"status": "ready"})),
        Err(reason) => reply(
            StatusCode::ServiceUnavailable,
            json!({"status": "not_ready", "reason": reason}),
        ),
    })
}

/// Always 200, so Prometheus keeps scraping while the relay is down and
/// `bsv_p2p_relay_up` says so. OpenMetrics to a scraper that asks for it
/// (Prometheus does), the text format 0.0.4 to anyone else.
async fn metrics(req: Request<State>) -> tide::Result {
    let sidecar = req.state();
    let arrival = Instant::now();
    let status = sidecar.link.status(arrival).await;
    let stats = sidecar.link.stats(arrival).await;
    let scrape_duration = arrival.elapsed();
    let mut page = Page::new();
    let relay_up = match (status, stats) {
        (Ok(status), Ok(stats)) => {
            page.add(metrics::Relay { status, stats });
            true
        }
        _ => {
            sidecar.scrape_errors.fetch_add(1, Ordering::Relaxed);
            false
        }
    };
    let http = sidecar
        .served
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(&(route, code), &n)| (route, code, n))
        .collect();
    page.add(metrics::Own {
        relay_up,
        scrape_duration,
        scrape_errors: sidecar.scrape_errors.load(Ordering::Relaxed),
        link: sidecar.link.clone(),
        http,
        gate: sidecar.gate.clone(),
        process: process::own().map(|usage| (usage, process::open_file_limit())),
    });
    let accept = req.header("Accept").map(|v| v.as_str());
    let Ok((content_type, body)) = page.render(accept) else {
        return Ok(Response::builder(StatusCode::InternalServerError)
            .body("the metrics page could not be written\n")
            .build());
    };
    // Set as a header, before the body, to keep the format's canonical
    // spelling (the Mime type would reorder its parameters).
    Ok(Response::builder(StatusCode::Ok)
        .header("Content-Type", content_type)
        .body(body)
        .build())
}

/// The relay's uptime and peer count when it answers and listens somewhere.
async fn serving(req: &Request<State>) -> Result<(u64, u64), String> {
    let s = req
        .state()
        .link
        .status(Instant::now())
        .await
        .map_err(|Problem { reason, .. }| reason)?;
    if s.listen_addrs.is_empty() {
        return Err("the relay listens on no address (see its listener errors)".into());
    }
    Ok((s.uptime_secs, s.counts.peers))
}

fn wants_json(req: &Request<State>) -> bool {
    req.header("Accept")
        .is_some_and(|v| v.as_str().contains("application/json"))
}

fn reply(code: StatusCode, body: Value) -> Response {
    Response::builder(code)
        .content_type(mime::JSON)
        .body(body.to_string())
        .build()
}

fn unhealthy(reason: &str) -> Response {
    reply(
        StatusCode::ServiceUnavailable,
        json!({"status": "unhealthy", "reason": reason}),
    )
}

/// Counts the response, forbids caching, and puts a JSON body on the
/// router's bare 404 and 405.
fn finish<'a>(
    req: Request<State>,
    next: Next<'a, State>,
) -> Pin<Box<dyn Future<Output = tide::Result> + Send + 'a>> {
    Box::pin(async move {
        let sidecar = req.state().clone();
        let path = req.url().path().to_string();
        let method = req.method().to_string();
        let mut res = next.run(req).await;
        match res.status() {
            StatusCode::NotFound => {
                res.set_body(json!({"error": "not found", "path": path}).to_string());
                res.set_content_type(mime::JSON);
            }
            StatusCode::MethodNotAllowed => {
                res.set_body(
                    json!({
                        "error": "method not allowed",
                        "method": method,
                        "path": path,
                        "allow": ["GET", "HEAD"],
                    })
                    .to_string(),
                );
                res.set_content_type(mime::JSON);
                res.insert_header("Allow", ALLOW);
            }
            _ => {}
        }
        res.insert_header("Cache-Control", "no-store");
        let route = ROUTES
            .iter()
            .find(|r| **r == path)
            .copied()
            .unwrap_or("other");
        *sidecar
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route, u16::from(res.status())))
            .or_default() += 1;
        Ok(res)
    })
}
