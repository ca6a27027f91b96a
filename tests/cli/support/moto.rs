//! A real DynamoDB-compatible server for tests: moto's server mode on a free loopback port,
//! plus a small synchronous client to create tables, seed items and read them back.
//!
//! A missing `moto_server` fails the test with the install command; the server is killed on drop.

use super::{free_port, require, wait_for};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The fake credentials and region every process talking to moto gets (relayctl through
/// `Relayctl::aws`).
pub const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    // Never probe the EC2 metadata address from a test.
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

pub struct Moto {
    pub port: u16,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
    client: aws_sdk_dynamodb::Client,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .build();
        let mut m = Moto {
            port,
            child: None,
            rt,
            client: aws_sdk_dynamodb::Client::from_conf(config),
        };
        m.restart();
        m
    }

    /// Starts (again) on the same port, empty.
    pub fn restart(&mut self) {
        let bin = require("moto_server", "pip install 'moto[server]'");
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        self.child = Some(child);
        let port = self.port;
        wait_for(
            &format!("moto_server on port {port}"),
            Duration::from_secs(30),
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
    }

    /// Kills the server, as a crash or network loss would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `table` with the key schema of the LaunchDarkly SDKs and Relay.
    pub fn create_table(&self, table: &str) {
        self.create_table_with_keys(table, "namespace", "key");
    }

    /// Creates `table` with a string partition key `hash` and sort key `range`.
    pub fn create_table_with_keys(&self, table: &str, hash: &str, range: &str) {
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let key = |n: &str, t| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .unwrap()
        };
        self.rt
            .block_on(
                self.client
                    .create_table()
                    .table_name(table)
                    .attribute_definitions(attr(hash))
                    .attribute_definitions(attr(range))
                    .key_schema(key(hash, KeyType::Hash))
                    .key_schema(key(range, KeyType::Range))
                    .billing_mode(BillingMode::PayPerRequest)
                    .send(),
            )
            .expect("creating a table in moto");
    }

    /// Puts one raw item.
    pub fn put(&self, table: &str, item: HashMap<String, AttributeValue>) {
        self.rt
            .block_on(
                self.client
                    .put_item()
                    .table_name(table)
                    .set_item(Some(item))
                    .send(),
            )
            .expect("putting an item in moto");
    }

    /// Stores `flags` as Relay's DynamoDB store does (namespace `<prefix>:features` or bare
    /// `features`, `version` attribute equal to the JSON's) and writes the `$inited` marker.
    pub fn seed(&self, table: &str, prefix: Option<&str>, flags: &[Value]) {
        let ns = |kind: &str| prefix.map_or(kind.to_owned(), |p| format!("{p}:{kind}"));
        for f in flags {
            self.put(table, flag_item(&ns("features"), f));
        }
        let inited = ns("$inited");
        self.put(
            table,
            HashMap::from([
                ("namespace".into(), AttributeValue::S(inited.clone())),
                ("key".into(), AttributeValue::S(inited)),
            ]),
        );
    }

    /// Stores `segments` as Relay's DynamoDB store does (namespace `<prefix>:segments`).
    pub fn seed_segments(&self, table: &str, prefix: &str, segments: &[Value]) {
        for s in segments {
            self.put(table, flag_item(&format!("{prefix}:segments"), s));
        }
    }

    /// The item of `key` in `namespace`, if any.
    pub fn item(&self, table: &str, namespace: &str, key: &str) -> Option<HashMap<String, AttributeValue>> {
        self.rt
            .block_on(
                self.client
                    .get_item()
                    .table_name(table)
                    .key("namespace", AttributeValue::S(namespace.into()))
                    .key("key", AttributeValue::S(key.into()))
                    .consistent_read(true)
                    .send(),
            )
            .expect("reading an item from moto")
            .item
    }

    /// The flag JSON and the `version` attribute of `key` in `namespace`.
    pub fn flag(&self, table: &str, namespace: &str, key: &str) -> Option<(Value, u64)> {
        let item = self.item(table, namespace, key)?;
        let json = serde_json::from_str(item["item"].as_s().unwrap()).unwrap();
        let version = item["version"].as_n().unwrap().parse().unwrap();
        Some((json, version))
    }

    /// Every item of the table, keyed by (namespace, key), as debug text to compare byte for byte.
    pub fn scan(&self, table: &str) -> BTreeMap<(String, String), String> {
        let out = self
            .rt
            .block_on(self.client.scan().table_name(table).send())
            .expect("scanning a table in moto");
        out.items()
            .iter()
            .map(|i| {
                let s = |n: &str| i[n].as_s().unwrap().clone();
                let sorted: BTreeMap<_, _> = i.iter().collect();
                ((s("namespace"), s("key")), format!("{sorted:?}"))
            })
            .collect()
    }
}

/// The item Relay writes for flag JSON `f` in `namespace`.
pub fn flag_item(namespace: &str, f: &Value) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("namespace".into(), AttributeValue::S(namespace.into())),
        ("key".into(), AttributeValue::S(f["key"].as_str().unwrap().into())),
        ("version".into(), AttributeValue::N(f["version"].to_string())),
        ("item".into(), AttributeValue::S(f.to_string())),
    ])
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}
