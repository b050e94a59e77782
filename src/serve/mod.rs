//! `serve`: a worker for BundleGen's RabbitMQ front-end. It consumes
//! generation requests from the durable `bundlegen-requests` queue, runs
//! each through the same pipeline as `generate`, and answers on the
//! request's `reply_to` queue with BundleGen's reply, so that BundleGen's
//! clients and a mixed fleet of BundleGen and bundlegen workers work
//! unchanged.
//!
//! Acknowledgement follows BundleGen's rules (ack on success; a transient
//! failure is requeued unless it was already redelivered; a fatal one, or a
//! retry's failure, gets a failure reply and is not requeued), and goes
//! beyond them where they are weak:
//! - prefetch equals the number of jobs a worker runs (1 by default), so
//!   the broker hands work to idle workers (fair dispatch);
//! - a request is acknowledged only after its bundle is committed under its
//!   final name, and a redelivered request whose bundle was committed is
//!   answered from the store without redoing it ([`store`]);
//! - a message that is not a request is rejected without requeue (the
//!   broker dead-letters it if the queue has a dead-letter policy), and no
//!   message can stop the worker: `generate` runs in a child process, with a
//!   time limit;
//! - SIGTERM or SIGINT stops taking requests, lets those in hand finish
//!   within a grace period, then kills and requeues what is left;
//! - a lost broker is reconnected with exponential backoff.

pub mod job;
pub mod log;
pub mod request;
pub mod settings;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio::time::Instant;

use job::{JobContext, Outcome};
use log::Log;
use request::Reply;
pub use settings::{Settings, SettingsError, Vars};
use store::{RequestKey, Store, StoreError};

/// Records of answered requests are kept this long (a redelivery comes
/// within minutes; a week covers any broker outage).
const RECORD_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// First and longest wait between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("cannot use the bundle store")]
    Store(#[from] StoreError),
    #[error("cannot create {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the event loop")]
    Runtime(#[source] std::io::Error),
    #[error("cannot find the bundlegen executable")]
    Exe(#[source] std::io::Error),
    #[error(
        "gave up on the broker at {broker} after {attempts} failed connection attempts\nhelp: is RabbitMQ running there, and are RABBITMQ_USERNAME/RABBITMQ_PASSWORD right?"
    )]
    Broker {
        broker: String,
        attempts: u32,
        #[source]
        source: lapin::Error,
    },
}

/// How the worker runs (the settings say where).
#[derive(Debug, Clone)]
pub struct Options {
    /// The queue to consume ([`request::QUEUE`]).
    pub queue: String,
    /// Requests run at once; also the prefetch count.
    pub jobs: usize,
    /// A request still running after this is stopped (a transient failure).
    pub time_limit: Duration,
    /// After SIGTERM, how long requests in hand may take before they are
    /// stopped and requeued.
    pub stop_timeout: Duration,
    /// Consecutive failed connection attempts before giving up (`None`:
    /// never).
    pub max_reconnects: Option<u32>,
    /// The `bundlegen` executable (runs `generate`).
    pub exe: PathBuf,
    /// `generate -j` per request (0: one thread per core).
    pub threads: usize,
}

/// What `bundlegen serve` is asked for on its command line.
#[derive(Debug, Clone)]
pub struct Request {
    /// The `.env` file; `None`: the nearest `.env` at or above the working
    /// directory, if any.
    pub env_file: Option<PathBuf>,
    pub queue: String,
    /// Requests at once, lowered to what the memory allows (`job_memory`
    /// each, see [`memory_bounded_jobs`]).
    pub jobs: usize,
    pub job_memory: u64,
    pub time_limit: Duration,
    pub stop_timeout: Duration,
    pub max_reconnects: Option<u32>,
    pub threads: usize,
    /// Log debug events too (the global `-v`).
    pub debug: bool,
}

/// Reads the settings (the environment, then the `.env` file), and runs
/// the worker with this executable for `generate` and JSON-line logs on
/// standard error.
pub fn start(req: &Request) -> Result<(), ServeError> {
    let dotenv = req.env_file.clone().or_else(|| std::env::current_dir().ok().and_then(|d| settings::find_dotenv(&d)));
    let vars = Vars::load(dotenv.as_deref())?;
    let settings = Settings::from_vars(&vars)?;
    let exe = std::env::current_exe().map_err(ServeError::Exe)?;
    let opts = Options {
        queue: req.queue.clone(),
        jobs: memory_bounded_jobs(req.jobs.max(1), req.job_memory),
        time_limit: req.time_limit,
        stop_timeout: req.stop_timeout,
        max_reconnects: req.max_reconnects,
        exe,
        threads: req.threads,
    };
    let log = Arc::new(Log::new(Box::new(std::io::stderr()), req.debug));
    run(&settings, &opts, log)
}

/// Runs the worker until SIGTERM/SIGINT (then `Ok`) or until the broker is
/// given up on.
pub fn run(settings: &Settings, opts: &Options, log: Arc<Log>) -> Result<(), ServeError> {
    for dir in [&settings.store_dir, &settings.tmp_dir] {
        std::fs::create_dir_all(dir).map_err(|source| ServeError::Dir {
            path: dir.clone(),
            source,
        })?;
    }
    let store = Store::open(&settings.store_dir)?;
    let swept = job::sweep_work_dirs(&settings.tmp_dir);
    let forgotten = store.forget_older_than(RECORD_AGE);
    log.info(
        "worker.start",
        None,
        &[
            ("broker", json!(settings.broker())),
            ("queue", json!(opts.queue)),
            ("jobs", json!(opts.jobs)),
            ("time_limit_s", json!(opts.time_limit.as_secs())),
            ("store", json!(settings.store_dir)),
            ("stale_work_dirs_removed", json!(swept)),
            ("old_records_removed", json!(forgotten)),
        ],
    );
    let cx = JobContext {
        exe: opts.exe.clone(),
        store,
        tmp_dir: settings.tmp_dir.clone(),
        searchpath: settings.searchpath.clone(),
        registry_creds: settings.registry_creds.clone(),
        threads: opts.threads,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(Worker::new(settings, opts, cx, log).run())
}

/// A delivery waiting for its request's outcome.
struct Held {
    delivery: lapin::Acker,
    redelivered: bool,
    reply_to: Option<ShortString>,
    correlation_id: Option<ShortString>,
    /// The connection it came on: acks on an older one are void (the broker
    /// requeued the message when that connection was lost).
    session: u64,
    received: Instant,
}

struct Session {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

struct Worker<'a> {
    settings: &'a Settings,
    opts: &'a Options,
    cx: Arc<JobContext>,
    log: Arc<Log>,
    session: Option<Session>,
    session_number: u64,
    jobs: JoinSet<Outcome>,
    /// Running jobs by task id, and the deliveries each will answer.
    running: HashMap<tokio::task::Id, (RequestKey, Vec<Held>)>,
    by_key: HashMap<RequestKey, tokio::task::Id>,
}

impl<'a> Worker<'a> {
    fn new(settings: &'a Settings, opts: &'a Options, cx: JobContext, log: Arc<Log>) -> Self {
        Worker {
            settings,
            opts,
            cx: Arc::new(cx),
            log,
            session: None,
            session_number: 0,
            jobs: JoinSet::new(),
            running: HashMap::new(),
            by_key: HashMap::new(),
        }
    }

    async fn run(mut self) -> Result<(), ServeError> {
        let mut sigterm = signal(SignalKind::terminate()).map_err(ServeError::Runtime)?;
        let mut sigint = signal(SignalKind::interrupt()).map_err(ServeError::Runtime)?;
        let mut reconnect_at = Instant::now();
        let mut failures: u32 = 0;
        let mut stop_deadline: Option<Instant> = None;
        loop {
            if stop_deadline.is_some() && self.jobs.is_empty() {
                break;
            }
            let take = self.session.is_some()
                && stop_deadline.is_none()
                && self.jobs.len() < self.opts.jobs.max(1);
            let connect = self.session.is_none() && stop_deadline.is_none();
            tokio::select! {
                biased;
                _ = sigterm.recv() => {
                    if self.stop(&mut stop_deadline, "SIGTERM").await { break; }
                }
                _ = sigint.recv() => {
                    if self.stop(&mut stop_deadline, "SIGINT").await { break; }
                }
                _ = sleep_until_opt(stop_deadline), if stop_deadline.is_some() => {
                    self.abort_all().await;
                    break;
                }
                Some(done) = self.jobs.join_next_with_id(), if !self.jobs.is_empty() => {
                    match done {
                        Ok((id, outcome)) => self.finish(id, outcome).await,
                        Err(e) => {
                            let outcome = Outcome::Transient(format!("the job failed: {e}"));
                            self.finish(e.id(), outcome).await
                        }
                    }
                }
                delivery = next_delivery(self.session.as_mut()), if take => match delivery {
                    Some(Ok(d)) => self.accept(d).await,
                    other => {
                        let error = match other { Some(Err(e)) => e.to_string(), _ => "the consumer was cancelled".into() };
                        self.log.warn("broker.lost", None, &[("broker", json!(self.settings.broker())), ("error", json!(error))]);
                        self.session = None;
                        reconnect_at = Instant::now() + BACKOFF_MIN;
                    }
                },
                result = connect_at(reconnect_at, self.settings, self.opts), if connect => match result {
                    Ok(session) => {
                        failures = 0;
                        self.session_number += 1;
                        self.session = Some(session);
                        self.log.info("broker.connected", None, &[("broker", json!(self.settings.broker())), ("queue", json!(self.opts.queue))]);
                    }
                    Err(e) => {
                        failures += 1;
                        if self.opts.max_reconnects.is_some_and(|m| failures > m) {
                            self.abort_all().await;
                            return Err(ServeError::Broker { broker: self.settings.broker(), attempts: failures, source: e });
                        }
                        let wait = backoff(failures);
                        self.log.warn("broker.unreachable", None, &[
                            ("broker", json!(self.settings.broker())),
                            ("error", json!(e.to_string())),
                            ("attempt", json!(failures)),
                            ("retry_in_s", json!(wait.as_secs())),
                        ]);
                        reconnect_at = Instant::now() + wait;
                    }
                },
            }
        }
        if let Some(s) = self.session.take() {
            let _ = s.channel.close(200, "worker stopping".into()).await;
            let _ = s.connection.close(200, "worker stopping".into()).await;
        }
        self.log.info("worker.stop", None, &[]);
        Ok(())
    }

    /// Begins a graceful stop; a second signal stops at once. Returns true
    /// when there is nothing left to wait for.
    async fn stop(&mut self, deadline: &mut Option<Instant>, signal: &str) -> bool {
        if deadline.is_some() {
            self.log
                .warn("worker.stop.now", None, &[("signal", json!(signal))]);
            self.abort_all().await;
            return true;
        }
        *deadline = Some(Instant::now() + self.opts.stop_timeout);
        self.log.info(
            "worker.stopping",
            None,
            &[
                ("signal", json!(signal)),
                ("in_hand", json!(self.jobs.len())),
                ("grace_s", json!(self.opts.stop_timeout.as_secs())),
            ],
        );
        if let Some(s) = &self.session {
            let _ = s
                .channel
                .basic_cancel(s.consumer.tag(), BasicCancelOptions::default())
                .await;
        }
        self.jobs.is_empty()
    }

    /// Stops every running job and requeues its deliveries.
    async fn abort_all(&mut self) {
        self.jobs.abort_all();
        while self.jobs.join_next().await.is_some() {}
        for (_, (key, holders)) in std::mem::take(&mut self.running) {
            self.log.warn(
                "request.requeued",
                Some(&key.uuid),
                &[("reason", json!("the worker is stopping"))],
            );
            for h in holders {
                self.settle(&h, Settle::Nack { requeue: true }).await;
            }
        }
        self.by_key.clear();
    }

    async fn accept(&mut self, d: lapin::message::Delivery) {
        let held = Held {
            delivery: d.acker,
            redelivered: d.redelivered,
            reply_to: d.properties.reply_to().clone(),
            correlation_id: d.properties.correlation_id().clone(),
            session: self.session_number,
            received: Instant::now(),
        };
        let req = match request::decode(&d.data) {
            Ok(r) => r,
            Err(invalid) => {
                self.log.warn(
                    "request.rejected",
                    invalid.uuid.as_deref(),
                    &[
                        ("reason", json!(invalid.reason)),
                        ("bytes", json!(d.data.len())),
                        ("redelivered", json!(d.redelivered)),
                    ],
                );
                if let Some(uuid) = &invalid.uuid {
                    self.reply(&held, &Reply::failure(uuid)).await;
                }
                self.settle(&held, Settle::Reject).await;
                return;
            }
        };
        let key = RequestKey::new(&req.uuid, &d.data);
        self.log.info(
            "request.received",
            Some(&req.uuid),
            &[
                ("platform", json!(req.platform)),
                ("image_url", json!(req.image_url)),
                ("redelivered", json!(d.redelivered)),
            ],
        );
        if let Some(path) = self.cx.store.committed(&key) {
            self.log.info(
                "request.done",
                Some(&req.uuid),
                &[
                    ("result", json!("success")),
                    ("bundle_path", json!(path)),
                    ("from_store", json!(true)),
                ],
            );
            self.reply(&held, &Reply::success(&req.uuid, &path.to_string_lossy()))
                .await;
            self.settle(&held, Settle::Ack).await;
            return;
        }
        if let Some(id) = self.by_key.get(&key)
            && let Some((_, holders)) = self.running.get_mut(id)
        {
            // Redelivered after a lost connection while still running here.
            self.log.info("request.joined", Some(&req.uuid), &[]);
            holders.push(held);
            return;
        }
        let cx = Arc::clone(&self.cx);
        let limit = self.opts.time_limit;
        let job_key = key.clone();
        let handle = self.jobs.spawn(async move {
            match tokio::time::timeout(limit, job::run(&req, &job_key, &cx)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Transient(job::timeout_message(limit)),
            }
        });
        self.by_key.insert(key.clone(), handle.id());
        self.running.insert(handle.id(), (key, vec![held]));
    }

    async fn finish(&mut self, id: tokio::task::Id, outcome: Outcome) {
        let Some((key, holders)) = self.running.remove(&id) else {
            return;
        };
        self.by_key.remove(&key);
        for h in holders {
            let seconds = json!((h.received.elapsed().as_millis() as f64) / 1000.0);
            if h.session != self.session_number || self.session.is_none() {
                // Its connection is gone: the broker redelivers it, and the
                // redelivery is answered from the store (or retried).
                self.log.info(
                    "request.orphaned",
                    Some(&key.uuid),
                    &[("result", json!(kind(&outcome)))],
                );
                continue;
            }
            match &outcome {
                Outcome::Success(path) => {
                    self.log.info(
                        "request.done",
                        Some(&key.uuid),
                        &[
                            ("result", json!("success")),
                            ("bundle_path", json!(path)),
                            ("seconds", seconds),
                        ],
                    );
                    self.reply(&h, &Reply::success(&key.uuid, &path.to_string_lossy()))
                        .await;
                    self.settle(&h, Settle::Ack).await;
                }
                Outcome::Transient(why) if !h.redelivered => {
                    self.log.warn(
                        "request.retry",
                        Some(&key.uuid),
                        &[
                            ("result", json!("transient")),
                            ("error", json!(why)),
                            ("seconds", seconds),
                        ],
                    );
                    self.settle(&h, Settle::Nack { requeue: true }).await;
                }
                Outcome::Transient(why) | Outcome::Fatal(why) => {
                    self.log.error(
                        "request.failed",
                        Some(&key.uuid),
                        &[
                            ("result", json!(kind(&outcome))),
                            ("error", json!(why)),
                            ("redelivered", json!(h.redelivered)),
                            ("seconds", seconds),
                        ],
                    );
                    self.reply(&h, &Reply::failure(&key.uuid)).await;
                    self.settle(&h, Settle::Nack { requeue: false }).await;
                }
            }
        }
    }

    async fn reply(&self, h: &Held, reply: &Reply) {
        let (Some(session), Some(to)) = (&self.session, &h.reply_to) else {
            if h.reply_to.is_none() {
                self.log.warn(
                    "reply.skipped",
                    Some(&reply.uuid),
                    &[("reason", json!("the request has no reply_to"))],
                );
            }
            return;
        };
        let mut props = BasicProperties::default();
        if let Some(c) = &h.correlation_id {
            props = props.with_correlation_id(c.clone());
        }
        let sent = session
            .channel
            .basic_publish(
                "".into(),
                to.clone(),
                BasicPublishOptions::default(),
                &reply.encode(),
                props,
            )
            .await;
        if let Err(e) = sent {
            self.log.warn(
                "reply.failed",
                Some(&reply.uuid),
                &[("error", json!(e.to_string()))],
            );
        }
    }

    async fn settle(&self, h: &Held, how: Settle) {
        if h.session != self.session_number || self.session.is_none() {
            return;
        }
        let result = match how {
            Settle::Ack => h.delivery.ack(BasicAckOptions::default()).await,
            Settle::Nack { requeue } => {
                h.delivery
                    .nack(BasicNackOptions {
                        requeue,
                        multiple: false,
                    })
                    .await
            }
            Settle::Reject => {
                h.delivery
                    .reject(BasicRejectOptions { requeue: false })
                    .await
            }
        };
        if let Err(e) = result {
            self.log
                .warn("ack.failed", None, &[("error", json!(e.to_string()))]);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Settle {
    Ack,
    Nack { requeue: bool },
    Reject,
}

fn kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Success(_) => "success",
        Outcome::Transient(_) => "transient",
        Outcome::Fatal(_) => "fatal",
    }
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1 << failures.saturating_sub(1).min(5))
        .min(BACKOFF_MAX)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_delivery(
    session: Option<&mut Session>,
) -> Option<lapin::Result<lapin::message::Delivery>> {
    use futures_core::Stream;
    let session = session?;
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut session.consumer).poll_next(cx)).await
}

/// Connects at `at`: a channel with prefetch = jobs, the queue declared as
/// BundleGen declares it (durable, no arguments, so that both kinds of
/// worker can share it), and a consumer with manual acks.
async fn connect_at(at: Instant, settings: &Settings, opts: &Options) -> lapin::Result<Session> {
    tokio::time::sleep_until(at).await;
    let props = ConnectionProperties::default()
        .with_connection_name(format!("bundlegen serve (pid {})", std::process::id()).into());
    let connection = Connection::connect(&settings.amqp_uri(), props).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(
            opts.jobs.clamp(1, u16::MAX as usize) as u16,
            BasicQosOptions::default(),
        )
        .await?;
    channel
        .queue_declare(
            opts.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let consumer = channel
        .basic_consume(
            opts.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(Session {
        connection,
        channel,
        consumer,
    })
}

/// Requests a worker may run at once: `jobs`, fewer when the available
/// memory (`MemAvailable`) does not hold `job_memory` bytes for each, and
/// at least one.
pub fn memory_bounded_jobs(jobs: usize, job_memory: u64) -> usize {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    match available {
        Some(bytes) if job_memory > 0 => jobs.min((bytes / job_memory) as usize).max(1),
        _ => jobs.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
