//! The four services under test ([`travel::local::LocalServices`], SQLite in a temp
//! directory, like `travel serve all`), requests checked against the contract, and the
//! people and records the scenarios start from.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use travel::Service;
use travel::local::{Database, LocalServices};

use crate::spec::Contract;

const SECRET: &str = "contract-test-secret-0123456789abcdef-0123";

pub struct App {
    http: reqwest::Client,
    services: tokio::sync::Mutex<LocalServices>,
    addrs: Vec<(Service, SocketAddr)>,
    pub contract: Contract,
    /// (path, method, status) of every checked reply.
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl App {
    pub async fn start() -> Self {
        let mut config = travel::Config::new(Some(SECRET)).unwrap();
        config.parties_timeout = Duration::from_millis(1500);
        let mut services = LocalServices::bind(config, Database::FreshSqlite)
            .await
            .unwrap();
        services.start(&Service::ALL);
        App {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            addrs: Service::ALL.map(|s| (s, services.addr(s))).to_vec(),
            services: tokio::sync::Mutex::new(services),
            contract: Contract::load(),
            seen: Mutex::default(),
        }
    }

    fn addr(&self, service: Service) -> SocketAddr {
        self.addrs.iter().find(|(s, _)| *s == service).unwrap().1
    }

    /// Stop one service and wait until it has.
    pub async fn stop(&self, service: Service) {
        self.services.lock().await.stop(service).await.unwrap();
    }

    /// (path, method, status) of every reply checked so far.
    pub fn seen(&self) -> BTreeSet<(String, String, u16)> {
        self.seen.lock().unwrap().clone()
    }

    /// Send a request to `service` without checking the answer.
    pub async fn send(
        &self,
        service: Service,
        method: Method,
        target: &str,
        req: Req<'_>,
    ) -> Reply {
        let url = format!("http://{}{target}", self.addr(service));
        let mut builder = self.http.request(method, &url);
        builder = match req.auth {
            Auth::None => builder,
            Auth::Bearer(token) => builder.bearer_auth(token),
            Auth::Basic(login, password) => builder.basic_auth(login, Some(password)),
        };
        if let Some(body) = req.body {
            builder = builder
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_owned());
        }
        let response = builder.send().await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    /// Call an operation of the contract, assert the status, and check the whole reply
    /// against the contract.
    pub async fn expect(&self, method: Method, path: &str, req: Req<'_>, status: u16) -> Reply {
        let target = if req.query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", form(req.query))
        };
        let reply = self
            .send(self.contract.service(path), method.clone(), &target, req)
            .await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{method} {target}: body {}",
            reply.body
        );
        self.contract.check(&method, path, &reply);
        self.seen
            .lock()
            .unwrap()
            .insert((path.to_owned(), method.to_string(), status));
        reply
    }

    /// Registers `who`; the new id.
    pub async fn register(&self, who: &Person) -> i64 {
        let reply = self
            .expect(Method::POST, "/user", body(&who.form(), Auth::None), 200)
            .await;
        reply.json().as_i64().unwrap()
    }

    /// `GET /auth` with `who`'s Basic credentials; the token.
    pub async fn login(&self, who: &Person) -> String {
        self.expect(Method::GET, "/auth", query(&[], who.basic()), 200)
            .await
            .body
    }

    /// Registers `who` and logs in: (id, token).
    pub async fn sign_up(&self, who: &Person) -> (i64, String) {
        let id = self.register(who).await;
        (id, self.login(who).await)
    }

    /// Creates [`TRIP`] (with its id) as the owner of `token`.
    pub async fn create_trip(&self, token: &str) {
        let trip = form(&TRIP);
        self.expect(Method::POST, "/trip", body(&trip, Auth::Bearer(token)), 200)
            .await;
    }
}

/// A person the scenarios register.
pub struct Person {
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub email: &'static str,
    pub title: &'static str,
    pub login: &'static str,
    pub password: &'static str,
}

impl Person {
    /// The registration form.
    pub fn form(&self) -> String {
        form(&[
            ("first_name", self.first_name),
            ("last_name", self.last_name),
            ("email", self.email),
            ("title", self.title),
            ("login", self.login),
            ("password", self.password),
        ])
    }

    pub fn basic(&self) -> Auth<'static> {
        Auth::Basic(self.login, self.password)
    }
}

pub const ADA: Person = Person {
    first_name: "Domingo",
    last_name: "Marks",
    email: "Domingo_Marks57@gmail.com",
    title: "gold",
    login: "purple",
    password: "NXRHcmpmOWRTQ1d5dlhL",
};

pub const GRACE: Person = Person {
    first_name: "Minnie",
    last_name: "Mayert",
    email: "Minnie.Mayert42@yahoo.com",
    title: "salmon",
    login: "tan",
    password: "eWQyUmFKWGE2N1JlQU1B",
};

/// The fields of a trip, its id first.
pub const TRIP: [(&str, &str); 5] = [
    ("id", "1"),
    ("id_path", "76"),
    ("name", "nullam"),
    ("start_time", "8:46 AM"),
    ("fin_time", "3:02 PM"),
];

/// Credentials to send.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

/// A request: query parameters, an optional urlencoded body, credentials.
#[derive(Clone, Copy)]
pub struct Req<'a> {
    pub query: &'a [(&'a str, &'a str)],
    pub body: Option<&'a str>,
    pub auth: Auth<'a>,
}

pub fn query<'a>(query: &'a [(&'a str, &'a str)], auth: Auth<'a>) -> Req<'a> {
    Req {
        query,
        body: None,
        auth,
    }
}

pub fn body<'a>(body: &'a str, auth: Auth<'a>) -> Req<'a> {
    Req {
        query: &[],
        body: Some(body),
        auth,
    }
}

/// `application/x-www-form-urlencoded` of the pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}
