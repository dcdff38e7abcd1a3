//! A real mosquitto broker for the tests (Debian's package, installed by setup), started on
//! free loopback ports with its own config, data and log in a temporary directory, and
//! killed when dropped. Plus a subscriber that records everything it receives, with a
//! persistent QoS 1 session so it loses nothing across a broker restart.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::run_ok;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Files for a TLS listener: a CA and a server certificate for 127.0.0.1/localhost.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Generates a CA and a server certificate signed by it, with the openssl CLI.
pub fn make_ca(dir: &Path, name: &str) -> TlsFiles {
    make_ca_for(dir, name, "IP:127.0.0.1,DNS:localhost")
}

/// Like [`make_ca`], with the server certificate valid only for `subject_alt_names`
/// (openssl's form, e.g. `DNS:broker.test`).
pub fn make_ca_for(dir: &Path, name: &str, subject_alt_names: &str) -> TlsFiles {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let openssl = |args: &[&str]| {
        run_ok(Command::new("openssl").args(args).current_dir(dir));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} test CA"),
        "-keyout",
        p("ca.key").to_str().unwrap(),
        "-out",
        p("ca.pem").to_str().unwrap(),
    ]);
    let ext = p("ext.cnf");
    std::fs::write(&ext, format!("subjectAltName={subject_alt_names}\n")).unwrap();
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        p("server.key").to_str().unwrap(),
        "-out",
        p("server.csr").to_str().unwrap(),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        p("server.csr").to_str().unwrap(),
        "-CA",
        p("ca.pem").to_str().unwrap(),
        "-CAkey",
        p("ca.key").to_str().unwrap(),
        "-CAcreateserial",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        p("server.pem").to_str().unwrap(),
    ]);
    // mosquitto drops root privileges: it must be able to read the files.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        for f in ["ca.pem", "server.pem", "server.key"] {
            let _ = std::fs::set_permissions(p(f), std::fs::Permissions::from_mode(0o644));
        }
    }
    TlsFiles {
        ca: p("ca.pem"),
        cert: p("server.pem"),
        key: p("server.key"),
    }
}

#[derive(Default)]
pub struct BrokerOptions {
    /// (user, password) required on every listener when set.
    pub user: Option<(String, String)>,
    /// Adds a TLS listener with these files.
    pub tls: Option<TlsFiles>,
}

pub struct Broker {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: Option<u16>,
    config: PathBuf,
    child: Option<Child>,
}

impl Broker {
    pub fn start(options: BrokerOptions) -> Broker {
        let dir = tempfile::tempdir().expect("broker dir");
        // Started as root, mosquitto drops to its own user: it must be able to write its
        // log and persistence files here.
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777));
        }
        let port = free_port();
        let tls_port = options.tls.as_ref().map(|_| free_port());
        let mut conf = format!(
            "per_listener_settings false\npersistence true\npersistence_location {}/\nautosave_interval 1\nlog_dest file {}/mosquitto.log\nlog_type all\n",
            dir.path().display(),
            dir.path().display()
        );
        match &options.user {
            Some((user, password)) => {
                let file = dir.path().join("passwords");
                run_ok(
                    Command::new("mosquitto_passwd")
                        .args(["-b", "-c"])
                        .arg(&file)
                        .arg(user)
                        .arg(password),
                );
                conf.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
            None => conf.push_str("allow_anonymous true\n"),
        }
        conf.push_str(&format!("listener {port} 127.0.0.1\n"));
        if let (Some(tls), Some(tls_port)) = (&options.tls, tls_port) {
            conf.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
                tls.ca.display(),
                tls.cert.display(),
                tls.key.display()
            ));
        }
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(&config, conf).unwrap();
        let mut broker = Broker {
            dir,
            port,
            tls_port,
            config,
            child: None,
        };
        broker.resume();
        broker
    }

    /// (Re)starts the broker process on the same ports, config and persistence.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto installed (scripts/setup.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker (it saves its persistent sessions on SIGTERM).
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A message as the subscriber got it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retained: bool,
    pub received: Instant,
}

impl Message {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// Records every message on `filter`, reconnecting (with its persistent session) forever.
pub struct Subscriber {
    pub messages: Arc<Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
    client: rumqttc::Client,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    pub fn start(port: u16, filter: &str, credentials: Option<(&str, &str)>) -> Subscriber {
        let mut options =
            rumqttc::MqttOptions::new(format!("test-sub-{}", free_port()), "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(4 << 20, 4 << 20);
        if let Some((u, p)) = credentials {
            options.set_credentials(u, p);
        }
        let (client, mut connection) = rumqttc::Client::new(options, 64);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let messages = Arc::clone(&messages);
            let stop = Arc::clone(&stop);
            let client = client.clone();
            let filter = filter.to_string();
            move || {
                for event in connection.iter() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match event {
                        // Subscribe on every connection, as mosquitto_sub does: a session the
                        // broker lost in a restart must not silently stop the test's ears.
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                            let _ =
                                client.try_subscribe(filter.as_str(), rumqttc::QoS::AtLeastOnce);
                        }
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                            let _ = subscribed_tx.send(());
                        }
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                            messages.lock().unwrap().push(Message {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                retained: p.retain,
                                received: Instant::now(),
                            });
                        }
                        Ok(_) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            }
        });
        subscribed_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("subscription acknowledged");
        Subscriber {
            messages,
            stop,
            client,
            thread: Some(thread),
        }
    }

    pub fn on_topic(&self, suffix: &str) -> Vec<Message> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic.ends_with(suffix))
            .cloned()
            .collect()
    }

    /// Waits until `done` holds for the messages so far, or panics after `timeout`.
    pub fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&[Message]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            // A snapshot: `done` may look at the subscriber again (no lock held here).
            let snapshot = self.messages.lock().unwrap().clone();
            if done(&snapshot) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Publishes (QoS 1) as this subscriber's client, e.g. a command to the agent.
    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .expect("queue publish");
    }

    /// Publishes with the retain flag: the broker keeps it for every later subscriber.
    pub fn publish_retained(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, true, payload)
            .expect("queue publish");
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
