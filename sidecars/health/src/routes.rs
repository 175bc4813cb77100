//! The HTTP endpoints, one function each, and the one middleware that gives
//! every response the same finish: counted for `/metrics`, never cached by
//! a proxy, and a JSON body on 404 and 405.
//!
//! | route | answers |
//! | --- | --- |
//! | `/status` | the guide's `{"peerId","reservations","connections",…}` |
//! | `/health` | `{"status":"healthy","uptime","peers"}`, or 503 with a reason |
//! | `/livez` | 200 while the sidecar runs; never asks the relay |
//! | `/readyz` | 200 while the relay answers, listens and has its federation quorum, else 503 |
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
use bsv_p2p_proto::{process, FederationState, StatusResult};

use crate::guard::Gate;
use crate::link::{Link, Problem};
use crate::metrics;

pub type State = Arc<Sidecar>;

/// What every endpoint shares.
pub struct Sidecar {
    pub link: Arc<Link>,
    /// Federated relays that must be connected for `/readyz`; 0: none.
    federation_quorum: usize,
    /// The HTTP connections, for their gauges and what was shed.
    gate: Arc<Gate>,
    started: Instant,
    scrape_errors: AtomicU64,
    /// Responses by route and status code; routes come from [`ROUTES`] or
    /// are "other", so the map stays small.
    served: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl Sidecar {
    pub fn new(link: Arc<Link>, gate: Arc<Gate>, federation_quorum: usize) -> Sidecar {
        Sidecar {
            link,
            federation_quorum,
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
/// addresses, and `federation` (`{"configured","connected"}`) when the
/// relay federates with other relays. While the relay cannot be read the
/// answer is 503 with the body `DOWN` — the word the guide's
/// `health-check.sh` tests for, so that script reports CRITICAL as printed
/// — or, to a client that asks for JSON, `{"status":"unhealthy","reason"}`.
async fn status(req: Request<State>) -> tide::Result {
    match req.state().link.status(Instant::now()).await {
        Ok(s) => Ok(reply(StatusCode::Ok, {
            let mut body = json!({
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
            });
            if !s.federation.is_empty() {
                body["federation"] = json!({
                    "configured": s.federation.len(),
                    "connected": connected(&s),
                });
            }
            body
        })),
        Err(problem) if wants_json(&req) => Ok(unhealthy(&problem.reason)),
        Err(_) => Ok(Response::builder(StatusCode::ServiceUnavailable)
            .content_type(mime::PLAIN)
            .body("DOWN\n")
            .build()),
    }
}

/// Healthy while the relay answers and listens on at least one address.
/// Federation plays no part: a relay whose federated relays are all gone
/// still serves its own bots.
async fn health(req: Request<State>) -> tide::Result {
    Ok(match serving(&req).await {
        Ok(s) => reply(
            StatusCode::Ok,
            json!({"status": "healthy", "uptime": s.uptime_secs, "peers": s.counts.peers}),
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

/// Readiness: the relay behind this sidecar can serve bots and, with
/// `--federation-quorum N`, has at least N of its federated relays connected
/// to carry their gossip across.
async fn readyz(req: Request<State>) -> tide::Result {
    let quorum = req.state().federation_quorum;
    let ready = serving(&req)
        .await
        .and_then(|s| federation_quorum(&s, quorum));
    Ok(match ready {
        Ok(()) => reply(StatusCode::Ok, json!({"status": "ready"})),
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

/// The relay's status when it answers and listens somewhere.
async fn serving(req: &Request<State>) -> Result<Arc<StatusResult>, String> {
    let s = req
        .state()
        .link
        .status(Instant::now())
        .await
        .map_err(|Problem { reason, .. }| reason)?;
    if s.listen_addrs.is_empty() {
        return Err("the relay listens on no address (see its listener errors)".into());
    }
    Ok(s)
}

/// Federated relays connected now.
fn connected(s: &StatusResult) -> usize {
    s.federation
        .iter()
        .filter(|p| p.state == FederationState::Connected)
        .count()
}

/// Whether at least `quorum` federated relays are connected (always, for
/// 0). A quorum larger than the relays configured can never be met, so it
/// is not ready, saying so, rather than ready with fewer.
fn federation_quorum(s: &StatusResult, quorum: usize) -> Result<(), String> {
    let (configured, connected) = (s.federation.len(), connected(s));
    if quorum == 0 {
        Ok(())
    } else if configured == 0 {
        Err(format!(
            "federation: quorum of {quorum} but the relay reports no federated relays \
             (none in its federation.peers, or a relay older than control protocol 1.5)"
        ))
    } else if quorum > configured {
        Err(format!(
            "federation: quorum of {quorum} exceeds the {configured} federated relays \
             configured ({connected} connected); lower --federation-quorum or list more \
             relays in federation.peers"
        ))
    } else if connected < quorum {
        Err(format!(
            "federation: {connected} of {configured} federated relays connected, \
             below the quorum of {quorum}"
        ))
    } else {
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Limits;
    use crate::metrics::tests::federated;
    use async_std::task;
    use bsv_p2p_proto::testing::{config, feed, samples, Relay, TempDir};
    use bsv_p2p_proto::Command;
    use std::time::Duration;
    use tide::http::{Method, Url};

    /// The sample status with one federated relay connected and one waiting.
    fn one_of_two() -> StatusResult {
        StatusResult {
            federation: vec![
                federated("12D3KooWFedA", FederationState::Connected, 0),
                federated("12D3KooWFedB", FederationState::Waiting, 0),
            ],
            ..samples::status()
        }
    }

    #[test]
    fn a_quorum_of_zero_is_always_met() {
        assert_eq!(federation_quorum(&samples::status(), 0), Ok(()));
        assert_eq!(federation_quorum(&one_of_two(), 0), Ok(()));
    }

    #[test]
    fn a_quorum_is_met_by_enough_connected_relays() {
        assert_eq!(federation_quorum(&one_of_two(), 1), Ok(()));
        let mut both = one_of_two();
        both.federation[1].state = FederationState::Connected;
        assert_eq!(federation_quorum(&both, 2), Ok(()));
    }

    #[test]
    fn an_unmet_quorum_says_how_many_are_connected() {
        assert_eq!(
            federation_quorum(&one_of_two(), 2).unwrap_err(),
            "federation: 1 of 2 federated relays connected, below the quorum of 2"
        );
        let mut none = one_of_two();
        none.federation[0].state = FederationState::Dialing;
        assert_eq!(
            federation_quorum(&none, 1).unwrap_err(),
            "federation: 0 of 2 federated relays connected, below the quorum of 1"
        );
    }

    #[test]
    fn a_quorum_beyond_the_relays_configured_is_never_ready() {
        let mut both = one_of_two();
        both.federation[1].state = FederationState::Connected;
        assert_eq!(
            federation_quorum(&both, 3).unwrap_err(),
            "federation: quorum of 3 exceeds the 2 federated relays configured (2 connected); \
             lower --federation-quorum or list more relays in federation.peers"
        );
        assert_eq!(
            federation_quorum(&samples::status(), 1).unwrap_err(),
            "federation: quorum of 1 but the relay reports no federated relays (none in its \
             federation.peers, or a relay older than control protocol 1.5)"
        );
    }

    /// The app in front of proto's stand-in relay, whose `status` is `status`.
    async fn sidecar(
        dir: &TempDir,
        status: StatusResult,
        quorum: usize,
    ) -> (Relay, tide::Server<State>) {
        let socket = dir.join("relay.sock");
        let relay = Relay::start_with(config(&socket), feed(100), move |commands| {
            task::spawn(async move {
                while let Ok(command) = commands.recv().await {
                    match command {
                        Command::Status(reply) => reply.ok(status.clone()),
                        Command::Stats(reply) => reply.ok(samples::stats()),
                        _ => {}
                    }
                }
            });
        })
        .await;
        let (link, keeper) = Link::new(socket, Duration::from_secs(2), Duration::ZERO);
        task::spawn(keeper.run());
        for _ in 0..100 {
            if link.is_up() {
                break;
            }
            task::sleep(Duration::from_millis(50)).await;
        }
        assert!(link.is_up(), "the stand-in relay is reachable");
        let gate = Gate::new(Limits {
            max_connections: 4,
            request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        });
        (relay, app(Sidecar::new(link, gate, quorum)))
    }

    async fn get(app: &tide::Server<State>, path: &str) -> (u16, Value) {
        let url = Url::parse(&format!("http://127.0.0.1{path}")).unwrap();
        let mut res: tide::http::Response = app
            .respond(tide::http::Request::new(Method::Get, url))
            .await
            .unwrap();
        let body = res.body_string().await.unwrap();
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (u16::from(res.status()), json)
    }

    #[test]
    fn readyz_waits_for_the_quorum_while_health_and_livez_do_not() {
        task::block_on(async {
            let dir = TempDir::new("health-quorum");
            let (_relay, app) = sidecar(&dir, one_of_two(), 2).await;
            assert_eq!(
                get(&app, "/readyz").await,
                (
                    503,
                    json!({
                        "status": "not_ready",
                        "reason": "federation: 1 of 2 federated relays connected, below the quorum of 2"
                    })
                )
            );
            let (code, health) = get(&app, "/health").await;
            assert_eq!((code, &health["status"]), (200, &json!("healthy")));
            assert_eq!(get(&app, "/livez").await.0, 200);
            let (code, status) = get(&app, "/status").await;
            assert_eq!(code, 200);
            assert_eq!(
                status["federation"],
                json!({"configured": 2, "connected": 1})
            );
            assert_eq!(status["peerId"], "12D3KooWRelay");
        });
    }

    #[test]
    fn readyz_is_ready_once_the_quorum_is_met_or_when_none_is_set() {
        task::block_on(async {
            let dir = TempDir::new("health-quorum-met");
            let (_relay, app) = sidecar(&dir, one_of_two(), 1).await;
            assert_eq!(
                get(&app, "/readyz").await,
                (200, json!({"status": "ready"}))
            );
            let dir = TempDir::new("health-quorum-unset");
            let (_relay, app) = sidecar(&dir, samples::status(), 0).await;
            assert_eq!(
                get(&app, "/readyz").await,
                (200, json!({"status": "ready"}))
            );
            let (_, status) = get(&app, "/status").await;
            assert!(status.get("federation").is_none(), "{status}");
        });
    }

    #[test]
    fn readyz_refuses_a_quorum_the_relay_cannot_meet() {
        task::block_on(async {
            let dir = TempDir::new("health-quorum-none");
            let (_relay, app) = sidecar(&dir, samples::status(), 2).await;
            let (code, body) = get(&app, "/readyz").await;
            assert_eq!(code, 503);
            assert!(
                body["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("federation: quorum of 2 but the relay reports no federated"),
                "{body}"
            );
            assert_eq!(get(&app, "/health").await.0, 200);
        });
    }
}
