//! The sidecar's figures: last success per source and per target, failures,
//! queue length, bytes shipped. `run` serves them at `/metrics` (Prometheus,
//! through proto's [`exposition`](bsv_p2p_proto::exposition) like every
//! sidecar) and `/health`: 200 while the last backup worked and every
//! target takes uploads, 503 with the reasons otherwise.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_std::net::TcpListener;
use bsv_p2p_proto::exposition::{self, Page, Source};

use crate::archive::Manifest;
use crate::queue::now_ms;

pub const MAX_CONNECTIONS: usize = 32;
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Default, Clone)]
pub struct SourceFigures {
    pub last_success_ms: u64,
    pub failures: u64,
}

#[derive(Default, Clone)]
pub struct TargetFigures {
    pub last_success_ms: u64,
    pub failures: u64,
    pub queued: u64,
    pub shipped: u64,
    pub shipped_bytes: u64,
    pub deleted: u64,
    /// Why the target is stopped (wrong credentials, missing bucket), if it is.
    pub refused: Option<String>,
    /// The last failure, while it is failing.
    pub failing: Option<String>,
}

#[derive(Default)]
struct Inner {
    sources: BTreeMap<String, SourceFigures>,
    targets: BTreeMap<String, TargetFigures>,
    backups: u64,
    backup_failures: u64,
    last_backup_ms: u64,
    last_backup_secs: f64,
    last_archive_bytes: u64,
    last_error: Option<String>,
    local_backups: u64,
    local_deleted: u64,
}

/// Shared by the backup thread, the shippers and the HTTP server.
#[derive(Default)]
pub struct Figures {
    inner: Mutex<Inner>,
    /// The scheduled interval, for /health's staleness check.
    pub interval: Option<Duration>,
}

impl Figures {
    pub fn new(interval: Option<Duration>) -> Self {
        Figures {
            inner: Mutex::default(),
            interval,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn source_done(&self, source: &str) {
        self.with(|i| {
            i.sources
                .entry(source.to_string())
                .or_default()
                .last_success_ms = now_ms()
        });
    }

    pub fn source_failed(&self, source: &str) {
        self.with(|i| i.sources.entry(source.to_string()).or_default().failures += 1);
    }

    pub fn backup_done(&self, manifest: &Manifest, took: Duration) {
        self.with(|i| {
            i.backups += 1;
            i.last_backup_ms = now_ms();
            i.last_backup_secs = took.as_secs_f64();
            i.last_archive_bytes = manifest.archive.bytes;
            i.last_error = None;
        });
    }

    pub fn backup_failed(&self, error: &str) {
        self.with(|i| {
            i.backup_failures += 1;
            i.last_error = Some(error.to_string());
        });
    }

    pub fn set_local(&self, backups: u64, deleted: u64) {
        self.with(|i| {
            i.local_backups = backups;
            i.local_deleted += deleted;
        });
    }

    /// Restores figures kept across restarts (`source:` / `target:` last
    /// success times).
    pub fn restore(&self, saved: &[(String, u64)]) {
        self.with(|i| {
            for (k, v) in saved {
                if let Some(s) = k.strip_prefix("source:") {
                    i.sources.entry(s.to_string()).or_default().last_success_ms = *v;
                } else if let Some(t) = k.strip_prefix("target:") {
                    i.targets.entry(t.to_string()).or_default().last_success_ms = *v;
                } else if k == "backup" {
                    i.last_backup_ms = *v;
                }
            }
        });
    }

    pub fn saved(&self) -> Vec<(String, u64)> {
        self.with(|i| {
            let mut out: Vec<(String, u64)> = i
                .sources
                .iter()
                .map(|(k, s)| (format!("source:{k}"), s.last_success_ms))
                .chain(
                    i.targets
                        .iter()
                        .map(|(k, t)| (format!("target:{k}"), t.last_success_ms)),
                )
                .collect();
            out.push(("backup".into(), i.last_backup_ms));
            out
        })
    }

    pub fn target(&self, name: &str, f: impl FnOnce(&mut TargetFigures)) {
        self.with(|i| f(i.targets.entry(name.to_string()).or_default()));
    }

    /// Why the sidecar is not healthy, if it is not.
    pub fn problems(&self) -> Vec<String> {
        self.with(|i| {
            let mut out = Vec::new();
            if let Some(e) = &i.last_error {
                out.push(format!("the last backup failed: {e}"));
            }
            if let Some(interval) = self.interval {
                let age = now_ms().saturating_sub(i.last_backup_ms);
                if i.last_backup_ms > 0 && age > 2 * interval.as_millis() as u64 + 60_000 {
                    out.push(format!(
                        "the newest backup is {} old",
                        humantime::format_duration(Duration::from_secs(age / 1000))
                    ));
                }
            }
            for (name, t) in &i.targets {
                if let Some(e) = &t.refused {
                    out.push(format!("{name} refuses uploads: {e}"));
                } else if let Some(e) = &t.failing {
                    out.push(format!("{name} is failing: {e}"));
                }
            }
            out
        })
    }
}

struct Figured(Arc<Figures>);

impl Source for Figured {
    fn write(&self, out: &mut exposition::Figures) -> fmt::Result {
        let (sources, targets, i) = self.0.with(|i| {
            (
                i.sources.clone(),
                i.targets.clone(),
                (
                    i.backups,
                    i.backup_failures,
                    i.last_backup_ms,
                    i.last_backup_secs,
                    i.last_archive_bytes,
                    i.local_backups,
                    i.local_deleted,
                ),
            )
        });
        let secs = |ms: u64| ms as f64 / 1000.0;
        out.counter(
            "bsv_p2p_backup_backups_total",
            "Backups written since start.",
            i.0,
        )?;
        out.counter(
            "bsv_p2p_backup_backup_failures_total",
            "Backups that could not be written at all since start.",
            i.1,
        )?;
        out.gauge(
            "bsv_p2p_backup_last_backup_timestamp_seconds",
            "Unix time of the newest backup written; 0 if none.",
            secs(i.2),
        )?;
        out.gauge(
            "bsv_p2p_backup_last_backup_duration_seconds",
            "How long the newest backup took.",
            i.3,
        )?;
        out.gauge(
            "bsv_p2p_backup_last_archive_bytes",
            "Size of the newest archive.",
            i.4,
        )?;
        out.gauge(
            "bsv_p2p_backup_local_backups",
            "Complete backups in the local directory.",
            i.5,
        )?;
        out.counter(
            "bsv_p2p_backup_local_deleted_total",
            "Local backups deleted by retention since start.",
            i.6,
        )?;
        out.gauges(
            "bsv_p2p_backup_source_last_success_timestamp_seconds",
            "Unix time a source was last copied into a backup; 0 if never.",
            "source",
            sources
                .iter()
                .map(|(k, s)| (k.clone(), secs(s.last_success_ms))),
        )?;
        out.counters(
            "bsv_p2p_backup_source_failures_total",
            "Times a source could not be copied (left out of a backup) since start.",
            "source",
            sources.iter().map(|(k, s)| (k.clone(), s.failures)),
        )?;
        out.gauges(
            "bsv_p2p_backup_target_up",
            "1 if the target took the last upload or delete (or none was tried yet), 0 while it fails or refuses.",
            "target",
            targets
                .iter()
                .map(|(k, t)| (k.clone(), u64::from(t.refused.is_none() && t.failing.is_none()))),
        )?;
        out.gauges(
            "bsv_p2p_backup_target_refused",
            "1 if the target refused us (credentials, bucket, permissions, host key) and uploads to it are stopped until restart.",
            "target",
            targets.iter().map(|(k, t)| (k.clone(), u64::from(t.refused.is_some()))),
        )?;
        out.gauges(
            "bsv_p2p_backup_target_last_success_timestamp_seconds",
            "Unix time of the last backup the target took; 0 if never.",
            "target",
            targets
                .iter()
                .map(|(k, t)| (k.clone(), secs(t.last_success_ms))),
        )?;
        out.gauges(
            "bsv_p2p_backup_target_queue_length",
            "Backups waiting to be shipped to the target.",
            "target",
            targets.iter().map(|(k, t)| (k.clone(), t.queued)),
        )?;
        out.counters(
            "bsv_p2p_backup_target_failures_total",
            "Uploads, listings and deletes at the target that failed since start.",
            "target",
            targets.iter().map(|(k, t)| (k.clone(), t.failures)),
        )?;
        out.counters(
            "bsv_p2p_backup_target_shipped_total",
            "Backups shipped to the target since start.",
            "target",
            targets.iter().map(|(k, t)| (k.clone(), t.shipped)),
        )?;
        out.counters(
            "bsv_p2p_backup_target_shipped_bytes_total",
            "Bytes shipped to the target since start (archives and manifests).",
            "target",
            targets.iter().map(|(k, t)| (k.clone(), t.shipped_bytes)),
        )?;
        out.counters(
            "bsv_p2p_backup_target_deleted_total",
            "Backups deleted at the target by retention since start.",
            "target",
            targets.iter().map(|(k, t)| (k.clone(), t.deleted)),
        )?;
        if let Some(usage) = bsv_p2p_proto::process::own() {
            out.process(&usage, bsv_p2p_proto::process::open_file_limit())?;
        }
        Ok(())
    }
}

pub async fn serve(listener: TcpListener, figures: Arc<Figures>) -> String {
    if let Ok(bound) = listener.local_addr() {
        log::info!("serving http://{bound}/metrics and /health");
    }
    let mut app = tide::with_state(figures);
    app.at("/metrics")
        .get(|req: tide::Request<Arc<Figures>>| async move {
            let mut page = Page::new();
            page.add(Figured(req.state().clone()));
            let accept = req.header("Accept").map(|v| v.as_str().to_string());
            Ok(match page.render(accept.as_deref()) {
                Ok((content_type, body)) => tide::Response::builder(200)
                    .content_type(content_type)
                    .body(body)
                    .build(),
                Err(_) => tide::Response::builder(500)
                    .body("the figures could not be written\n")
                    .build(),
            })
        });
    app.at("/health")
        .get(|req: tide::Request<Arc<Figures>>| async move {
            let problems = req.state().problems();
            let body = serde_json::json!({
                "status": if problems.is_empty() { "ok" } else { "degraded" },
                "problems": problems,
            });
            Ok(
                tide::Response::builder(if problems.is_empty() { 200 } else { 503 })
                    .content_type(tide::http::mime::JSON)
                    .body(body.to_string())
                    .build(),
            )
        });
    let serve = move |stream| {
        let app = app.clone();
        async move {
            let _ = async_h1::accept(stream, |req| async { app.respond(req).await }).await;
        }
    };
    exposition::accept_bounded(listener, MAX_CONNECTIONS, CONNECTION_DEADLINE, serve).await
}
