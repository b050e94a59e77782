//! `bundlegen serve`: a worker for BundleGen's RabbitMQ front-end
//! (`bundlegen-rabbitmq start`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::Failure;
use super::image_args::parse_bytes;
use bundlegen::serve::{self, ServeError};

pub const SETTINGS: &str = "\
Settings (environment, or a .env file for what the environment does not set):
  RABBITMQ_HOST               broker host (default localhost)
  RABBITMQ_PORT               broker port (default 5672)
  RABBITMQ_HEARTBEAT_SECONDS  AMQP heartbeat (default 60)
  RABBITMQ_USERNAME, RABBITMQ_PASSWORD, RABBITMQ_VHOST
                              (default guest, guest, /)
  BUNDLE_STORE_DIR            where finished bundles go (required)
  BUNDLEGEN_TMP_DIR           work directories (required)
  RDK_PLATFORM_SEARCHPATH     platform templates, for requests without one
  RDK_OCI_REGISTRY_CREDS      USER:PASSWORD for registries
Logs are JSON lines on stderr. SIGTERM or SIGINT stops the worker after the
requests in hand (requeued if they outlast --stop-timeout); a second signal
stops it at once.";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Settings file; default: `.env` in the current directory or its
    /// nearest parent that has one
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Queue to consume
    #[arg(long, value_name = "NAME", default_value = serve::request::QUEUE)]
    pub queue: String,
    /// Requests run at once (and the prefetch count), fewer if the
    /// available memory does not hold --job-memory for each
    #[arg(
        short = 'J',
        long,
        value_name = "N",
        default_value_t = 1,
        env = "BUNDLEGEN_SERVE_JOBS"
    )]
    pub jobs: usize,
    /// Memory one request may need (suffixes K, M, G: powers of 1024)
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = parse_bytes)]
    pub job_memory: u64,
    /// Stop a request that runs longer (seconds, or with a suffix s, m, h);
    /// it is requeued once, then answered as failed
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration, env = "BUNDLEGEN_SERVE_TIME_LIMIT")]
    pub time_limit: Duration,
    /// After SIGTERM, how long requests in hand may still take before they
    /// are stopped and requeued
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub stop_timeout: Duration,
    /// Give up (exit 3) after this many failed connection attempts in a
    /// row; default: keep trying, with backoff up to 30 s
    #[arg(long, value_name = "N")]
    pub max_reconnects: Option<u32>,
    /// Worker threads of each request's generate (default: one per core)
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
}

/// `debug`: the global `-v` was given; debug events are logged too.
pub fn run(args: ServeArgs, debug: bool) -> Result<(), Failure> {
    let request = serve::Request {
        env_file: args.env_file,
        queue: args.queue,
        jobs: args.jobs,
        job_memory: args.job_memory,
        time_limit: args.time_limit,
        stop_timeout: args.stop_timeout,
        max_reconnects: args.max_reconnects,
        threads: args.threads,
        debug,
    };
    serve::start(&request).map_err(|e| match e {
        ServeError::Settings(_) => Failure::BadInput(e.into()),
        other => Failure::Processing(other.into()),
    })
}

/// `90`, `90s`, `30m`, `2h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 30m or 2h"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(n.saturating_mul(factor)))
}
