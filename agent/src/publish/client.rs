//! One MQTT connection attempt over rumqttc, for MQTT 3.1.1 or 5, plain or TLS (rustls
//! with the ring provider). The publisher only needs a handful of operations, so both
//! protocol versions are folded into one small interface here.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5 as mqtt5;

use crate::config::{MqttConfig, MqttProtocol, TlsConfig};

/// What the connection reported.
#[derive(Debug)]
pub enum Polled {
    Connected,
    /// The client sent a QoS 1 publish with this packet id (0 for QoS 0).
    SentPublish(u16),
    /// The broker acknowledged a QoS 1 publish.
    PubAck(u16),
    Message {
        topic: String,
        payload: Vec<u8>,
        /// Set when the broker delivers a retained message (a stale command a client left
        /// behind), not one published while this client is subscribed.
        retained: bool,
    },
    Other,
}

/// Everything needed to connect, resolved from config once.
#[derive(Clone)]
pub struct ConnectSettings {
    pub host: String,
    pub port: u16,
    pub protocol: MqttProtocol,
    pub client_id: String,
    pub keep_alive: Duration,
    pub clean_session: bool,
    /// User name; the password is read from its source at every connection attempt, so a
    /// fixed password file takes effect without a restart.
    pub username: Option<String>,
    password_source: MqttConfig,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub will_topic: String,
    pub will_payload: Vec<u8>,
}

impl std::fmt::Debug for ConnectSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log line.
        f.debug_struct("ConnectSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("user", &self.username)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why an MQTT connection could not be set up, made or kept. The texts name the config
/// key to check where one helps.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MqttError {
    /// The password source or the TLS files cannot work (found at start, and at each
    /// connection for a password file).
    #[error("{0}")]
    Setup(String),
    /// The broker answered the CONNECT with a refusal.
    #[error("broker refused the connection: {0}")]
    Refused(String),
    /// The connection failed or dropped.
    #[error("{0}")]
    Connection(String),
    /// The client's request queue is closed: the connection is ending.
    #[error("{0}")]
    ClientClosed(String),
}

impl ConnectSettings {
    pub fn from_config(
        config: &MqttConfig,
        client_id: String,
        will_topic: String,
        will_payload: Vec<u8>,
    ) -> Result<ConnectSettings, MqttError> {
        // Fail at start for a password source that cannot work at all.
        let password = config.password().map_err(MqttError::Setup)?;
        if config.username.is_none() && password.is_some() {
            return Err(MqttError::Setup(
                "mqtt: a password is configured but no username".into(),
            ));
        }
        let tls = config
            .tls
            .as_ref()
            .map(build_tls)
            .transpose()
            .map_err(MqttError::Setup)?;
        Ok(ConnectSettings {
            host: config.host.clone(),
            port: config.port,
            protocol: config.protocol,
            client_id,
            keep_alive: config.keep_alive,
            clean_session: config.clean_session,
            username: config.username.clone(),
            password_source: config.clone(),
            tls,
            will_topic,
            will_payload,
        })
    }
}

fn build_tls(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let file = File::open(path)
                .map_err(|e| format!("cannot read mqtt.tls.ca_file {}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
                let cert = cert.map_err(|e| format!("mqtt.tls.ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("mqtt.tls.ca_file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "mqtt.tls.ca_file {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match &tls.server_name {
        // rumqttc verifies the certificate against the name it connects to; a broker
        // reached by address whose certificate names it otherwise needs the name given.
        Some(name) => {
            let name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| format!("mqtt.tls.server_name `{name}`: {e}"))?;
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("TLS setup: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(VerifyAs { inner, name }))
        }
        None => builder.with_root_certificates(roots),
    };
    let config = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert_path), Some(key_path)) => {
            let read = |p: &std::path::Path| {
                File::open(p)
                    .map(BufReader::new)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))
            };
            let certs = rustls_pemfile::certs(&mut read(cert_path)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("mqtt.tls.client_cert_file: {e}"))?;
            let key = rustls_pemfile::private_key(&mut read(key_path)?)
                .map_err(|e| format!("mqtt.tls.client_key_file: {e}"))?
                .ok_or_else(|| {
                    format!(
                        "mqtt.tls.client_key_file {} holds no private key",
                        key_path.display()
                    )
                })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("mqtt.tls client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Verifies the broker's certificate with the standard WebPKI checks (chain to the trusted
/// roots, validity, key usage, signatures) against `mqtt.tls.server_name` instead of the
/// address connected to. Nothing is skipped: only the name compared is another.
#[derive(Debug)]
struct VerifyAs {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _connected_to: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(mqtt5::AsyncClient),
}

pub enum EventLoop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<mqtt5::EventLoop>),
}

/// Largest packet read from the broker under MQTT 3.1.1: the protocol's own maximum (a
/// remaining length of 256 MiB - 1, plus the fixed header). 3.1.1 has no way to tell the
/// broker a smaller limit, and a client that refuses to read a packet drops the connection
/// without acknowledging it, so a broker keeping a persistent session redelivers the same
/// oversized command at every reconnect, forever. Reading it lets the publisher answer it
/// with `ok:false` and acknowledge it. (MQTT 5 announces `MAX_PACKET_V5` in CONNECT and the
/// broker drops bigger packets itself.) Brokers should still cap command sizes
/// (mosquitto's `message_size_limit`, docs/mqtt.md): a huge packet costs its size in memory
/// while it is read.
const MAX_INCOMING_V311: usize = (256 << 20) + 5;
/// Largest packet in either direction under MQTT 5, announced to the broker.
const MAX_PACKET_V5: u32 = 1 << 20;
/// Largest packet this client sends (incident events are a few KiB).
const MAX_OUTGOING: usize = 1 << 20;

/// Capacity of rumqttc's request channel; the publisher keeps far fewer requests pending,
/// so non-blocking sends never find it full.
const REQUEST_CAPACITY: usize = 512;

impl ConnectSettings {
    fn credentials(&self) -> Result<Option<(String, String)>, MqttError> {
        let Some(user) = &self.username else {
            return Ok(None);
        };
        let password = self
            .password_source
            .password()
            .map_err(MqttError::Setup)?
            .unwrap_or_default();
        Ok(Some((user.clone(), password)))
    }
}

pub fn connect(s: &ConnectSettings) -> Result<(Client, EventLoop), MqttError> {
    let credentials = s.credentials()?;
    let transport = |tls: &Option<Arc<rustls::ClientConfig>>| match tls {
        Some(config) => rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
            Arc::clone(config),
        )),
        None => rumqttc::Transport::tcp(),
    };
    match s.protocol {
        MqttProtocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(&s.client_id, &s.host, s.port);
            o.set_keep_alive(s.keep_alive)
                .set_clean_session(s.clean_session)
                .set_max_packet_size(MAX_INCOMING_V311, MAX_OUTGOING)
                .set_transport(transport(&s.tls))
                .set_last_will(rumqttc::LastWill::new(
                    &s.will_topic,
                    s.will_payload.clone(),
                    rumqttc::QoS::AtLeastOnce,
                    true,
                ));
            if let Some((user, password)) = &credentials {
                o.set_credentials(user, password);
            }
            let (client, eventloop) = rumqttc::AsyncClient::new(o, REQUEST_CAPACITY);
            Ok((Client::V4(client), EventLoop::V4(Box::new(eventloop))))
        }
        MqttProtocol::V5 => {
            let mut o = mqtt5::MqttOptions::new(&s.client_id, &s.host, s.port);
            o.set_keep_alive(s.keep_alive)
                .set_clean_start(s.clean_session)
                .set_max_packet_size(Some(MAX_PACKET_V5))
                .set_transport(transport(&s.tls))
                .set_last_will(mqtt5::mqttbytes::v5::LastWill::new(
                    &s.will_topic,
                    s.will_payload.clone(),
                    mqtt5::mqttbytes::QoS::AtLeastOnce,
                    true,
                    None,
                ));
            if let Some((user, password)) = &credentials {
                o.set_credentials(user, password);
            }
            let (client, eventloop) = mqtt5::AsyncClient::new(o, REQUEST_CAPACITY);
            Ok((Client::V5(client), EventLoop::V5(Box::new(eventloop))))
        }
    }
}

impl Client {
    pub fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        at_least_once: bool,
        retain: bool,
    ) -> Result<(), MqttError> {
        match self {
            Client::V4(c) => {
                let qos = if at_least_once {
                    rumqttc::QoS::AtLeastOnce
                } else {
                    rumqttc::QoS::AtMostOnce
                };
                c.try_publish(topic, qos, retain, payload)
                    .map_err(|e| MqttError::ClientClosed(e.to_string()))
            }
            Client::V5(c) => {
                let qos = if at_least_once {
                    mqtt5::mqttbytes::QoS::AtLeastOnce
                } else {
                    mqtt5::mqttbytes::QoS::AtMostOnce
                };
                c.try_publish(topic, qos, retain, payload)
                    .map_err(|e| MqttError::ClientClosed(e.to_string()))
            }
        }
    }

    pub fn subscribe(&self, filter: &str) -> Result<(), MqttError> {
        match self {
            Client::V4(c) => c
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| MqttError::ClientClosed(e.to_string())),
            Client::V5(c) => c
                .try_subscribe(filter, mqtt5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| MqttError::ClientClosed(e.to_string())),
        }
    }

    pub fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

impl EventLoop {
    /// Waits for the next event; an error ends this connection.
    pub async fn poll(&mut self) -> Result<Polled, MqttError> {
        match self {
            EventLoop::V4(e) => {
                use rumqttc::{Event, Outgoing, Packet};
                match e.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => match ack.code {
                        rumqttc::ConnectReturnCode::Success => Ok(Polled::Connected),
                        code => Err(refusal(&format!("{code:?}"))),
                    },
                    Ok(Event::Incoming(Packet::PubAck(ack))) => Ok(Polled::PubAck(ack.pkid)),
                    Ok(Event::Incoming(Packet::Publish(p))) => Ok(Polled::Message {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                        retained: p.retain,
                    }),
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ok(Polled::SentPublish(pkid)),
                    Ok(_) => Ok(Polled::Other),
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                        Err(refusal(&format!("{code:?}")))
                    }
                    Err(err) => Err(describe(&err.to_string())),
                }
            }
            EventLoop::V5(e) => {
                use mqtt5::Event;
                use mqtt5::mqttbytes::v5::{ConnectReturnCode, Packet};
                use rumqttc::Outgoing;
                match e.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => match ack.code {
                        ConnectReturnCode::Success => Ok(Polled::Connected),
                        code => Err(refusal(&format!("{code:?}"))),
                    },
                    Ok(Event::Incoming(Packet::PubAck(ack))) => Ok(Polled::PubAck(ack.pkid)),
                    Ok(Event::Incoming(Packet::Publish(p))) => Ok(Polled::Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                        retained: p.retain,
                    }),
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ok(Polled::SentPublish(pkid)),
                    Ok(_) => Ok(Polled::Other),
                    Err(mqtt5::ConnectionError::ConnectionRefused(code)) => {
                        Err(refusal(&format!("{code:?}")))
                    }
                    Err(err) => Err(describe(&err.to_string())),
                }
            }
        }
    }
}

/// A broker's refusal, in words an installer can act on.
fn refusal(code: &str) -> MqttError {
    let hint = match code {
        "BadUserNamePassword" => {
            "bad user name or password (check mqtt.username and mqtt.password_file/password_env)"
        }
        // Mosquitto 2 answers a wrong password with this code, not BadUserNamePassword.
        "NotAuthorized" => {
            "not authorized: wrong user name or password, or no permission (check mqtt.username, mqtt.password_file/password_env and the broker's ACL)"
        }
        "BadClientId" | "ClientIdentifierNotValid" => "client id rejected (check mqtt.box_id)",
        "ServiceUnavailable" | "ServerUnavailable" => "broker unavailable",
        "RefusedProtocolVersion" | "UnsupportedProtocolVersion" => {
            "protocol version refused (check mqtt.protocol)"
        }
        other => other,
    };
    MqttError::Refused(hint.to_string())
}

fn describe(err: &str) -> MqttError {
    let lower = err.to_lowercase();
    MqttError::Connection(if lower.contains("tls") || lower.contains("certificate") {
        format!("{err} (check mqtt.tls.ca_file and the broker's certificate)")
    } else if lower.contains("connection refused") {
        format!("{err} (is the broker running and listening there?)")
    } else {
        err.to_string()
    })
}
