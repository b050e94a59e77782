//! `bundlegen serve` against a real RabbitMQ (Debian's `rabbitmq-server`,
//! a private node on the loopback interface started for this test binary),
//! driven by a client written here that sends BundleGen's msgpack requests
//! and reads the replies on RabbitMQ's direct reply-to queue, as BundleGen's
//! own test client (`rabbitmq/test/test.py`) does.
//!
//! Whether a worker acked, requeued or dropped a message is seen at the
//! broker: the test queues have a dead-letter policy, so a message nacked
//! or rejected without requeue lands in `<queue>.dead`; an acked one does
//! not; a requeued one is delivered again with `redelivered` set.
//!
//! The broker takes 5 to 20 s to start, so one node serves every test here,
//! one test at a time (each with its own queue), and a watchdog process
//! stops it and removes its files when this test binary exits. Without
//! `rabbitmq-server` the tests fail under `CI` and are skipped otherwise.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::builder::{Entry, Image, Layer, Layout, RunConfig, digest_of};
use crate::faults::{app_metadata, base_layer, data_layer, noise};

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
/// A guard against a hang, never an expectation about speed.
const PATIENCE: Duration = Duration::from_secs(300);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bundlegen")
}

// ---------------------------------------------------------------------------
// The broker
// ---------------------------------------------------------------------------

struct Broker {
    dir: PathBuf,
    port: u16,
    epmd_port: u16,
    node: String,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("bundlegen-rabbitmq-")
            .tempdir()
            .expect("tempdir")
            .keep();
        fs::write(dir.join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        let mut broker = Broker {
            port: free_port(),
            epmd_port: free_port(),
            node: format!("bundlegen-test-{}@localhost", std::process::id()),
            dir,
            child: None,
        };
        broker.launch();
        broker.watchdog();
        broker
    }

    /// The node's environment: everything under `dir`, listening on
    /// 127.0.0.1 only (AMQP, Erlang distribution and epmd), no plugins.
    fn env(&self, cmd: &mut Command) {
        let d = &self.dir;
        cmd.env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d.join("pid"));
    }

    fn launch(&mut self) {
        let started = Instant::now();
        let log = fs::File::create(self.dir.join("server.out")).expect("server log");
        let mut cmd = Command::new(RABBITMQ_SERVER);
        self.env(&mut cmd);
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start rabbitmq-server"));
        while !self.accepts_amqp() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "rabbitmq-server exited ({status}):\n{}",
                    fs::read_to_string(self.dir.join("server.out")).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < PATIENCE,
                "rabbitmq-server did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "rabbitmq-server on 127.0.0.1:{} up after {:.1}s",
            self.port,
            started.elapsed().as_secs_f64()
        );
    }

    fn accepts_amqp(&self) -> bool {
        let rt = runtime();
        rt.block_on(async {
            match Connection::connect(&self.uri(), ConnectionProperties::default()).await {
                Ok(c) => {
                    let _ = c.close(200, "probe".into()).await;
                    true
                }
                Err(_) => false,
            }
        })
    }

    /// Stops the node (SIGTERM: Erlang's orderly shutdown) and waits.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = fs::read_to_string(self.dir.join("pid"))
                && let Ok(pid) = pid.trim().parse::<i32>()
            {
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            child.wait().expect("wait for rabbitmq-server");
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// A process that outlives this test binary: when the binary is gone,
    /// it stops the node and epmd and removes the node's files.
    fn watchdog(&self) {
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             pid=$(cat '{dir}/pid' 2>/dev/null); [ -n \"$pid\" ] && kill -TERM \"$pid\" 2>/dev/null; \
             i=0; while [ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done; \
             [ -n \"$pid\" ] && kill -KILL \"$pid\" 2>/dev/null; \
             ERL_EPMD_PORT={epmd} epmd -kill >/dev/null 2>&1; rm -rf '{dir}'",
            me = std::process::id(),
            dir = self.dir.display(),
            epmd = self.epmd_port
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        // Not waited for: it must outlive this process (init reaps it).
        #[allow(clippy::zombie_processes)]
        cmd.spawn().expect("start the broker watchdog");
    }

    fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2F", self.port)
    }

    fn ctl(&self, args: &[&str]) {
        let mut cmd = Command::new(RABBITMQCTL);
        self.env(&mut cmd);
        let out = cmd
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .output()
            .expect("run rabbitmqctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The shared broker, one test at a time; `None` when skipped.
fn broker() -> Option<MutexGuard<'static, Broker>> {
    static BROKER: OnceLock<Option<Mutex<Broker>>> = OnceLock::new();
    let cell = BROKER.get_or_init(|| {
        if !Path::new(RABBITMQ_SERVER).exists() {
            return crate::debian::unavailable(
                "rabbitmq-server is not installed (Debian package rabbitmq-server)",
            );
        }
        let broker = Broker::start();
        // Messages dropped by a worker (nack or reject without requeue) go
        // to the `dlx` exchange, routed by their queue name.
        broker.ctl(&[
            "set_policy",
            "bundlegen-dlx",
            "^serve-",
            r#"{"dead-letter-exchange":"dlx"}"#,
            "--apply-to",
            "queues",
        ]);
        Some(Mutex::new(broker))
    });
    cell.as_ref()
        .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------
// The client: BundleGen's requests and replies
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Reply {
    success: bool,
    uuid: String,
    bundle_path: Option<String>,
}

struct Client {
    rt: tokio::runtime::Runtime,
    _connection: Connection,
    channel: Channel,
    replies: Consumer,
    queue: String,
}

impl Client {
    /// Connects, declares `queue` as BundleGen does (durable) and its
    /// dead-letter queue, and listens on direct reply-to.
    fn new(broker: &Broker, queue: &str) -> Client {
        let rt = runtime();
        let (connection, channel, replies) = rt.block_on(async {
            let connection = Connection::connect(&broker.uri(), ConnectionProperties::default())
                .await
                .expect("client connects");
            let channel = connection.create_channel().await.expect("channel");
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .queue_declare(queue.into(), durable, FieldTable::default())
                .await
                .expect("declare queue");
            channel
                .exchange_declare(
                    "dlx".into(),
                    ExchangeKind::Direct,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("declare dlx");
            let dead = format!("{queue}.dead");
            channel
                .queue_declare(dead.as_str().into(), durable, FieldTable::default())
                .await
                .expect("declare dead-letter queue");
            channel
                .queue_bind(
                    dead.as_str().into(),
                    "dlx".into(),
                    queue.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("bind");
            let replies = channel
                .basic_consume(
                    "amq.rabbitmq.reply-to".into(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("consume direct reply-to");
            (connection, channel, replies)
        });
        Client {
            rt,
            _connection: connection,
            channel,
            replies,
            queue: queue.to_owned(),
        }
    }

    /// Publishes a persistent message with `reply_to`, as BundleGen's client.
    fn send(&self, body: &[u8]) {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_reply_to("amq.rabbitmq.reply-to".into());
        self.rt.block_on(async {
            self.channel
                .basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    props,
                )
                .await
                .expect("publish");
        });
    }

    /// The next `n` replies.
    fn replies(&mut self, n: usize) -> Vec<Reply> {
        use futures_core::Stream;
        let mut out = Vec::new();
        let consumer = &mut self.replies;
        self.rt.block_on(async {
            while out.len() < n {
                let next = tokio::time::timeout(
                    PATIENCE,
                    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *consumer).poll_next(cx)),
                )
                .await
                .unwrap_or_else(|_| panic!("no reply after {} of {n}", out.len()))
                .expect("reply consumer open")
                .expect("reply delivery");
                out.push(rmp_serde::from_slice::<Reply>(&next.data).expect("a BundleGen reply"));
            }
        });
        out
    }

    /// Messages ready in `queue` (not counting those a worker holds).
    fn ready(&self, queue: &str) -> u32 {
        self.rt.block_on(async {
            let q = self
                .channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("passive declare");
            q.message_count()
        })
    }

    fn dead(&self) -> u32 {
        self.ready(&format!("{}.dead", self.queue))
    }

    /// Waits until `n` messages were dead-lettered (a worker replies before
    /// it nacks), then checks that no more were.
    fn assert_dead(&self, n: u32) {
        let started = Instant::now();
        while self.dead() < n {
            assert!(
                started.elapsed() < PATIENCE,
                "{} of {n} messages dead-lettered",
                self.dead()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(self.dead(), n);
    }
}

/// A request as BundleGen's `Message` class packs it.
fn request(uuid: &str, platform: &str, image_url: &str, app_metadata: Value) -> Value {
    json!({
        "uuid": uuid, "platform": platform, "image_url": image_url, "app_metadata": app_metadata,
        "lib_match_mode": "normal", "output_filename": "", "searchpath": "", "outputdir": "",
        "createmountpoints": false, "app_id": ""
    })
}

fn pack(v: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(v).expect("msgpack")
}

// ---------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(broker: &Broker, queue: &str, world: &World, args: &[&str]) -> Worker {
        let log = world.root.join(format!("worker-{}.log", world.next_id()));
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--queue", queue])
            .args(args)
            .current_dir(&world.root)
            .env("RABBITMQ_HOST", "127.0.0.1")
            .env("RABBITMQ_PORT", broker.port.to_string())
            .env("BUNDLE_STORE_DIR", &world.store)
            .env("BUNDLEGEN_TMP_DIR", &world.tmp)
            .env_remove("RDK_PLATFORM_SEARCHPATH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("worker log"));
        let worker = Worker {
            child: cmd.spawn().expect("start bundlegen serve"),
            log,
        };
        worker.wait_for(|e| e["event"] == "broker.connected");
        worker
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn events(&self) -> Vec<Value> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("log line {l:?} is not JSON: {e}"))
            })
            .collect()
    }

    fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.events().iter().filter(|e| pred(e)).count()
    }

    fn wait_for(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            if let Some(e) = self.events().into_iter().find(&pred) {
                return e;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "worker log {} never showed the event; it has:\n{}",
                self.log.display(),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until this worker's `generate` child is writing a bundle
    /// (its staging directory exists), and returns the child's pid.
    fn wait_generating(&self, world: &World) -> i32 {
        let started = Instant::now();
        loop {
            for child in children_of(self.pid()) {
                let cmdline = fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
                let staging = fs::read_dir(&world.tmp)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|job| fs::read_dir(job.path()).ok())
                    .flatten()
                    .flatten()
                    .any(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(".bundle.bundlegen-")
                    });
                if cmdline.split(|&b| b == 0).any(|a| a == b"generate") && staging {
                    return child;
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the worker never ran generate"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn signal(&self, sig: i32) {
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill({sig})");
    }

    fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("wait for the worker")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid …: comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1))
            .and_then(|s| s.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

// ---------------------------------------------------------------------------
// Images and the store
// ---------------------------------------------------------------------------

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    tmp: PathBuf,
    ids: std::cell::Cell<u32>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("bundlegen-serve-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_owned();
        World {
            store: root.join("store"),
            tmp: root.join("tmp"),
            root,
            _dir: dir,
            ids: std::cell::Cell::new(0),
        }
    }

    fn next_id(&self) -> u32 {
        self.ids.set(self.ids.get() + 1);
        self.ids.get()
    }

    /// An image for the built-in qemux86-64 platform: a static x86-64
    /// entrypoint, `extra` layers, and `/appmetadata.json` with `id`.
    fn image(&self, name: &str, id: Option<&str>, extra: Vec<Layer>) -> String {
        let dir = self.root.join(name);
        let mut layers = vec![base_layer()];
        if let Some(id) = id {
            let meta = self.root.join(format!("{name}.json"));
            app_metadata(&meta, json!({"id": id}));
            layers.push(Layer::gz([Entry::file(
                "appmetadata.json",
                fs::read(&meta).expect("metadata"),
            )]));
        }
        layers.extend(extra);
        let mut image = Image::new(layers);
        image.run = RunConfig {
            entrypoint: Some(vec!["/usr/bin/app".into()]),
            ..RunConfig::default()
        };
        Layout::single(&dir, image);
        format!("oci:{}:latest", dir.display())
    }

    /// An image large enough that generate is caught while it writes.
    fn slow_image(&self, name: &str) -> String {
        let files: Vec<(String, usize)> =
            (0..48).map(|i| (format!("blob{i:02}"), 4 << 20)).collect();
        let files: Vec<(&str, usize)> = files.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        self.image(name, Some("com.example.slow"), vec![data_layer(&files, 7)])
    }

    /// The store's visible entries (bundles), sorted.
    fn bundles(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.store)
            .expect("read the store")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".bundlegen-serve")
            .collect();
        names.sort();
        names
    }
}

/// BundleGen's metadata for the image (what its test client sends).
fn metadata(id: &str) -> Value {
    json!({
        "id": id, "type": "application/vnd.rdk-app.dac.native", "graphics": false,
        "network": {"type": "open"}, "storage": {"persistent": [], "temp": []},
        "resources": {"ram": "50M"}, "features": [], "mounts": []
    })
}

/// `tar -tzf`: the archive is whole and has a bundle in it.
fn assert_bundle(path: &str) {
    let out = Command::new("tar")
        .arg("-tzf")
        .arg(path)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar -tzf {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.lines()
            .any(|l| l.trim_start_matches("./") == "config.json"),
        "no config.json in {path}:\n{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.trim_start_matches("./").starts_with("rootfs/usr/bin/app")),
        "no rootfs in {path}:\n{list}"
    );
}

fn is_default_name(path: &str, store: &Path, id: &str) -> bool {
    let Some(name) = path
        .strip_prefix(&format!("{}/{id}", store.display()))
        .and_then(|r| r.strip_suffix(".tar.gz"))
    else {
        return false;
    };
    name.len() == 6 && name.bytes().all(|b| b.is_ascii_lowercase())
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn serve_success_replies_with_the_bundle_path_and_acks() {
    let Some(broker) = broker() else { return };
    let world = World::new();
    let queue = "serve-success";
    let mut client = Client::new(&broker, queue);
    let worker = Worker::start(&broker, queue, &world, &[]);
    let image = world.image("app", Some("com.example.own"), vec![]);

    // The image's own metadata (app_metadata empty), BundleGen's default name.
    client.send(&pack(&request("u-own", "qemux86-64", &image, json!({}))));
    // Metadata, app id and file name from the request.
    let mut named = request(
        "u-named",
        "qemux86-64",
        &image,
        metadata("com.example.sent"),
    );
    named["output_filename"] = json!("named-bundle");
    named["app_id"] = json!("com.example.renamed");
    named["createmountpoints"] = json!(true);
    client.send(&pack(&named));
    let replies = client.replies(2);

    let own = replies
        .iter()
        .find(|r| r.uuid == "u-own")
        .expect("reply to u-own");
    assert!(own.success, "{own:?}");
    let own_path = own.bundle_path.clone().expect("bundle_path");
    assert!(
        is_default_name(&own_path, &world.store, "com.example.own"),
        "{own_path}"
    );
    assert_bundle(&own_path);
    let named_reply = replies
        .iter()
        .find(|r| r.uuid == "u-named")
        .expect("reply to u-named");
    assert_eq!(
        named_reply.bundle_path.as_deref(),
        Some(format!("{}/named-bundle.tar.gz", world.store.display()).as_str())
    );
    assert_bundle(named_reply.bundle_path.as_deref().unwrap_or_default());
    let list = Command::new("tar")
        .arg("-xzOf")
        .arg(named_reply.bundle_path.as_deref().unwrap_or_default())
        .arg("config.json")
        .output()
        .expect("tar");
    let config: Value = serde_json::from_slice(&list.stdout).expect("config.json");
    assert_eq!(
        config["hostname"], "com.example.renamed",
        "app_id overrides the metadata's id"
    );

    // The same request again: answered from the store, not generated again.
    client.send(&pack(&named));
    let again = client.replies(1);
    assert_eq!(again[0], *named_reply);
    worker.wait_for(|e| {
        e["event"] == "request.done" && e["from_store"] == true && e["request"] == "u-named"
    });
    assert_eq!(
        worker.count(|e| e["event"] == "request.received" && e["request"] == "u-named"),
        2
    );

    // Both acked: nothing dead-lettered, nothing waiting.
    assert_eq!(client.dead(), 0);
    assert_eq!(client.ready(queue), 0);
    assert_eq!(world.bundles().len(), 2, "{:?}", world.bundles());
    // Every log line of a request names it.
    for e in worker.events() {
        if e["event"]
            .as_str()
            .is_some_and(|n| n.starts_with("request."))
        {
            assert!(e["request"].is_string(), "{e}");
        }
    }
}

#[test]
fn serve_failure_classes_reply_and_ack_as_bundlegen_does() {
    let Some(broker) = broker() else { return };
    let world = World::new();
    let queue = "serve-failures";
    let mut client = Client::new(&broker, queue);
    let worker = Worker::start(&broker, queue, &world, &["--time-limit", "3s"]);
    let image = world.image("app", None, vec![]);
    let arm = {
        let dir = world.root.join("arm");
        let mut img = Image::new([base_layer()]).platform("arm64", "linux", None);
        img.run = RunConfig {
            entrypoint: Some(vec!["/usr/bin/app".into()]),
            ..RunConfig::default()
        };
        Layout::single(&dir, img);
        format!("oci:{}:latest", dir.display())
    };
    // A layer whose content is not what the config's diff_id says.
    let hostile = world.image(
        "hostile",
        None,
        vec![Layer::gz([Entry::file("x", b"x")]).with_diff_id(&digest_of(b"other"))],
    );
    // A registry that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("listen");
    let silent_url = format!(
        "docker://127.0.0.1:{}/app:latest",
        silent.local_addr().expect("addr").port()
    );

    let fatal = [
        (
            "unknown-platform",
            request(
                "unknown-platform",
                "no-such-platform",
                &image,
                metadata("com.example.a"),
            ),
        ),
        (
            "no-image",
            request("no-image", "qemux86-64", "", metadata("com.example.a")),
        ),
        (
            "bad-metadata",
            request("bad-metadata", "qemux86-64", &image, json!({"id": 42})),
        ),
        (
            "no-metadata",
            request("no-metadata", "qemux86-64", &image, json!({})),
        ),
        (
            "incompatible",
            request(
                "incompatible",
                "qemux86-64",
                &arm,
                metadata("com.example.a"),
            ),
        ),
        (
            "hostile-image",
            request(
                "hostile-image",
                "qemux86-64",
                &hostile,
                metadata("com.example.a"),
            ),
        ),
        ("bad-mode", {
            let mut r = request("bad-mode", "qemux86-64", &image, metadata("com.example.a"));
            r["lib_match_mode"] = json!("best");
            r
        }),
        ("path-name", {
            let mut r = request("path-name", "qemux86-64", &image, metadata("com.example.a"));
            r["output_filename"] = json!("../escaped");
            r
        }),
    ];
    for (_, r) in &fatal {
        client.send(&pack(r));
    }
    let replies = client.replies(fatal.len());
    for (uuid, _) in &fatal {
        let r = replies
            .iter()
            .find(|r| r.uuid == *uuid)
            .unwrap_or_else(|| panic!("no reply to {uuid}"));
        assert_eq!(
            *r,
            Reply {
                success: false,
                uuid: (*uuid).into(),
                bundle_path: None
            }
        );
        // Fatal: dropped at once, never requeued.
        let seen = |e: &Value| {
            (e["event"] == "request.received" || e["event"] == "request.rejected")
                && e["request"] == *uuid
        };
        assert_eq!(worker.count(seen), 1, "{uuid}");
    }
    // Each fatal failure is nacked (or rejected) without requeue.
    client.assert_dead(fatal.len() as u32);

    // Transient (the download fails; the time limit): requeued once with no
    // reply, then answered as failed and dropped.
    let transient = [
        (
            "download",
            request(
                "download",
                "qemux86-64",
                "docker://127.0.0.1:1/nothing:latest",
                metadata("com.example.a"),
            ),
        ),
        (
            "too-slow",
            request(
                "too-slow",
                "qemux86-64",
                &silent_url,
                metadata("com.example.a"),
            ),
        ),
    ];
    for (_, r) in &transient {
        client.send(&pack(r));
    }
    let replies = client.replies(transient.len());
    for (uuid, _) in &transient {
        let r = replies
            .iter()
            .find(|r| r.uuid == *uuid)
            .unwrap_or_else(|| panic!("no reply to {uuid}"));
        assert!(!r.success && r.bundle_path.is_none(), "{r:?}");
        let received: Vec<Value> = worker
            .events()
            .into_iter()
            .filter(|e| e["event"] == "request.received" && e["request"] == *uuid)
            .collect();
        assert_eq!(received.len(), 2, "{uuid}: delivered, then redelivered");
        assert_eq!(received[1]["redelivered"], true);
        assert_eq!(
            worker.count(|e| e["event"] == "request.retry" && e["request"] == *uuid),
            1
        );
        worker.wait_for(|e| {
            e["event"] == "request.failed" && e["request"] == *uuid && e["result"] == "transient"
        });
    }
    let slow = worker.wait_for(|e| e["event"] == "request.failed" && e["request"] == "too-slow");
    assert!(
        slow["error"]
            .as_str()
            .is_some_and(|m| m.contains("time limit")),
        "{slow}"
    );
    client.assert_dead((fatal.len() + transient.len()) as u32);
    assert!(world.bundles().is_empty(), "{:?}", world.bundles());
    assert_eq!(
        fs::read_dir(&world.tmp).expect("tmp").count(),
        0,
        "work directories are removed"
    );
    drop(silent);
}

#[test]
fn serve_worker_killed_mid_request_loses_nothing() {
    let Some(broker) = broker() else { return };
    let world = World::new();
    let queue = "serve-kill";
    let mut client = Client::new(&broker, queue);
    let image = world.slow_image("slow");
    let mut first = Worker::start(&broker, queue, &world, &[]);
    client.send(&pack(&request("killed", "qemux86-64", &image, json!({}))));
    let generate = first.wait_generating(&world);
    first.signal(libc::SIGKILL);
    first.wait();
    // The worker's generate dies with it.
    let started = Instant::now();
    while alive(generate) {
        assert!(started.elapsed() < PATIENCE, "generate outlived its worker");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        world.bundles().is_empty(),
        "nothing under a final name: {:?}",
        world.bundles()
    );

    // Another worker gets the request again and completes it; its start
    // removes the killed worker's work directory.
    let second = Worker::start(&broker, queue, &world, &[]);
    let reply = client.replies(1).remove(0);
    assert!(reply.success, "{reply:?}");
    let path = reply.bundle_path.expect("bundle_path");
    assert_bundle(&path);
    assert_eq!(world.bundles().len(), 1, "{:?}", world.bundles());
    let received =
        second.wait_for(|e| e["event"] == "request.received" && e["request"] == "killed");
    assert_eq!(received["redelivered"], true);
    let start = second.wait_for(|e| e["event"] == "worker.start");
    assert_eq!(start["stale_work_dirs_removed"], 1);
    assert_eq!(client.dead(), 0);
    assert_eq!(client.ready(queue), 0);
}

#[test]
fn serve_two_workers_share_a_queue() {
    let Some(broker) = broker() else { return };
    let world = World::new();
    let queue = "serve-two";
    let mut client = Client::new(&broker, queue);
    let image = world.image("app", Some("com.example.shared"), vec![]);
    let a = Worker::start(&broker, queue, &world, &[]);
    let b = Worker::start(&broker, queue, &world, &[]);
    let n = 6;
    for i in 0..n {
        client.send(&pack(&request(
            &format!("req-{i}"),
            "qemux86-64",
            &image,
            json!({}),
        )));
    }
    let replies = client.replies(n);
    let mut uuids: Vec<&str> = replies.iter().map(|r| r.uuid.as_str()).collect();
    uuids.sort();
    assert_eq!(
        uuids,
        (0..n).map(|i| format!("req-{i}")).collect::<Vec<_>>()
    );
    assert!(replies.iter().all(|r| r.success), "{replies:?}");
    let done = |w: &Worker| w.count(|e| e["event"] == "request.done");
    // Prefetch 1: the broker gives each idle worker one request at a time.
    assert!(
        done(&a) >= 1 && done(&b) >= 1,
        "a did {}, b did {}",
        done(&a),
        done(&b)
    );
    assert_eq!(done(&a) + done(&b), n);
    assert_eq!(world.bundles().len(), n);
    assert_eq!(client.dead(), 0);
}

#[test]
fn serve_reconnects_after_a_broker_restart() {
    let Some(mut broker) = broker() else { return };
    let world = World::new();
    let queue = "serve-restart";
    let image = world.image("app", Some("com.example.restart"), vec![]);
    let worker = Worker::start(&broker, queue, &world, &[]);
    broker.restart();
    worker.wait_for(|e| e["event"] == "broker.lost");
    let started = Instant::now();
    while worker.count(|e| e["event"] == "broker.connected") < 2 {
        assert!(started.elapsed() < PATIENCE, "the worker did not reconnect");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut client = Client::new(&broker, queue);
    client.send(&pack(&request(
        "after-restart",
        "qemux86-64",
        &image,
        json!({}),
    )));
    let reply = client.replies(1).remove(0);
    assert!(reply.success, "{reply:?}");
    assert_bundle(&reply.bundle_path.expect("bundle_path"));
}

#[test]
fn serve_sigterm_finishes_or_requeues_the_request_in_hand() {
    let Some(broker) = broker() else { return };
    let world = World::new();
    let queue = "serve-sigterm";
    let mut client = Client::new(&broker, queue);
    let image = world.slow_image("slow");

    // With time to spare, the request in hand is finished, then the worker exits 0.
    let mut worker = Worker::start(&broker, queue, &world, &[]);
    client.send(&pack(&request("finished", "qemux86-64", &image, json!({}))));
    worker.wait_generating(&world);
    worker.signal(libc::SIGTERM);
    let reply = client.replies(1).remove(0);
    assert!(reply.success, "{reply:?}");
    assert!(worker.wait().success());
    let events: Vec<String> = worker
        .events()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    let at = |name: &str| {
        events
            .iter()
            .position(|e| e == name)
            .unwrap_or_else(|| panic!("no {name} in {events:?}"))
    };
    assert!(
        at("worker.stopping") < at("request.done") && at("request.done") < at("worker.stop"),
        "{events:?}"
    );

    // With no grace period, it is stopped and requeued; the next worker completes it.
    let mut worker = Worker::start(&broker, queue, &world, &["--stop-timeout", "0s"]);
    client.send(&pack(&request("requeued", "qemux86-64", &image, json!({}))));
    worker.wait_generating(&world);
    worker.signal(libc::SIGTERM);
    assert!(worker.wait().success());
    worker.wait_for(|e| e["event"] == "request.requeued" && e["request"] == "requeued");
    assert_eq!(client.ready(queue), 1, "requeued, not dropped");
    let _next = Worker::start(&broker, queue, &world, &[]);
    let reply = client.replies(1).remove(0);
    assert_eq!(reply.uuid, "requeued");
    assert!(reply.success, "{reply:?}");
    assert_eq!(world.bundles().len(), 2, "{:?}", world.bundles());
    assert_eq!(client.dead(), 0);
}

#[test]
fn serve_survives_a_flood_of_malformed_messages() {
    let Some(broker) = broker() else { return };
    let world = World::new();
    let queue = "serve-flood";
    let mut client = Client::new(&broker, queue);
    let worker = Worker::start(&broker, queue, &world, &[]);
    let image = world.image("app", Some("com.example.flood"), vec![]);

    let mut with_uuid = 0;
    let mut sent = 0;
    for i in 0..400u64 {
        let body = match i % 8 {
            0 => noise((i as usize * 37) % 3000 + 1, i),
            1 => Vec::new(),
            2 => pack(&json!([1, 2, 3])),
            3 => pack(&json!({"platform": "qemux86-64"})),
            4 => pack(&json!({"uuid": 7, "platform": "x"})),
            5 => {
                with_uuid += 1;
                pack(&json!({"uuid": format!("bad-{i}"), "platform": ["not", "a", "string"]}))
            }
            6 => b"\xdf\xff\xff\xff\xff".to_vec(), // a map claiming 4 billion entries
            _ => {
                let mut b = pack(&request(
                    &format!("cut-{i}"),
                    "qemux86-64",
                    &image,
                    json!({}),
                ));
                b.truncate(b.len() / 2);
                b
            }
        };
        client.send(&body);
        sent += 1;
    }
    client.send(&pack(&request("valid", "qemux86-64", &image, json!({}))));
    let replies = client.replies(with_uuid + 1);
    let valid = replies
        .iter()
        .find(|r| r.uuid == "valid")
        .expect("the valid request is answered");
    assert!(valid.success, "{valid:?}");
    assert!(
        replies
            .iter()
            .filter(|r| r.uuid != "valid")
            .all(|r| !r.success),
        "{replies:?}"
    );
    // Every malformed message is rejected without requeue.
    client.assert_dead(sent);
    assert_eq!(
        worker.count(|e| e["event"] == "request.rejected"),
        sent as usize
    );
    assert!(alive(worker.pid()));
    // Still serving.
    client.send(&pack(&request("after", "qemux86-64", &image, json!({}))));
    assert!(client.replies(1)[0].success);
}

/// The global `-v`/`-vv` (BundleGen's scripts pass it before the command)
/// reaches `serve` as its debug switch: a worker that cannot reach its
/// broker gives up with exit 3 after logging JSON lines, instead of clap
/// panicking over two `verbose` arguments of different types (found when
/// the `-v` count and `serve` were merged).
#[test]
fn serve_takes_the_global_verbose_flag() {
    let port = free_port();
    for flags in [&["-vv", "serve"][..], &["serve", "-v"][..], &["serve"][..]] {
        let out = Command::new(bin())
            .args(flags)
            .args(["--max-reconnects", "1"])
            .env("RABBITMQ_HOST", "127.0.0.1")
            .env("RABBITMQ_PORT", port.to_string())
            .env("BUNDLE_STORE_DIR", std::env::temp_dir())
            .env("BUNDLEGEN_TMP_DIR", std::env::temp_dir())
            .stdin(Stdio::null())
            .output()
            .expect("run bundlegen serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{flags:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flags:?}: {stderr}");
        let unreachable = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["event"] == "broker.unreachable")
            .count();
        assert!(unreachable >= 1, "{flags:?}: no broker.unreachable event: {stderr}");
        assert!(stderr.contains("error: gave up on the broker"), "{flags:?}: {stderr}");
    }
}
