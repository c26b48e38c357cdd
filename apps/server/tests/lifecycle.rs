//! The token lifecycle as production runs it: random sequences of login, use, refresh,
//! logout, erasure and the passing of time (expiry, idle timeout) through the real service
//! over a real SQLite store and the in-process mock WeChat, with a clock the test moves. After
//! every step each token ever issued is tried: no dead token may work, every live one must.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use wxlogin_crypto::{OsTokens, WeChatCipher};
use wxlogin_domain::{AppId, Clock, LoginCode, LoginService, Service, ServiceConfig};
use wxlogin_store_sqlite::Sqlite;
use wxlogin_wechat_mock::MockWeChat;

/// A clock that moves only when the test says so.
#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

const TTL: i64 = 100;
const IDLE: i64 = 30;
const TOUCH: i64 = 10;
const USERS: [&str; 3] = ["o-a", "o-b", "o-c"];

#[derive(Debug, Clone)]
enum Step {
    Login(usize),
    Use(usize),
    Refresh(usize),
    Logout(usize),
    Erase(usize),
    Wait(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..USERS.len()).prop_map(Step::Login),
        3 => (0..16usize).prop_map(Step::Use),
        2 => (0..16usize).prop_map(Step::Refresh),
        1 => (0..16usize).prop_map(Step::Logout),
        1 => (0..16usize).prop_map(Step::Erase),
        3 => (1..45i64).prop_map(Step::Wait),
    ]
}

/// What the model knows of one token.
struct Issued {
    token: String,
    user: usize,
    /// The user's generation when issued: an erasure ends every earlier generation.
    generation: u32,
    expires_at: DateTime<Utc>,
    /// The last use the store recorded (written at most once per touch interval).
    last_seen: DateTime<Utc>,
    revoked: bool,
}

struct Model {
    issued: Vec<Issued>,
    generations: [u32; USERS.len()],
}

impl Model {
    fn live(&self, i: usize, now: DateTime<Utc>) -> bool {
        let t = &self.issued[i];
        !t.revoked
            && t.generation == self.generations[t.user]
            && now < t.expires_at
            && now < t.last_seen + Duration::seconds(IDLE)
    }

    /// A successful authentication records use as the service does.
    fn used(&mut self, i: usize, now: DateTime<Utc>) {
        let t = &mut self.issued[i];
        if now - t.last_seen >= Duration::seconds(TOUCH) {
            t.last_seen = now;
        }
    }
}

type TestService = Service<Sqlite, MockWeChat, WeChatCipher, OsTokens, TestClock>;

async fn check_all(service: &TestService, model: &mut Model, now: DateTime<Utc>) {
    for i in 0..model.issued.len() {
        let live = model.live(i, now);
        let answer = service.authenticate(&model.issued[i].token).await;
        assert_eq!(
            answer.is_ok(),
            live,
            "token {i} (user {}, gen {}) at {now}: {answer:?}",
            model.issued[i].user,
            model.issued[i].generation
        );
        if live {
            model.used(i, now);
        }
    }
}

async fn run(steps: Vec<Step>) {
    let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let clock = TestClock(Arc::new(Mutex::new(start)));
    let mock = MockWeChat::new(AppId::parse("wxlifecycle").unwrap(), None);
    let store = Sqlite::connect("sqlite::memory:").await.unwrap();
    let service = Service::new(
        store,
        mock.clone(),
        WeChatCipher,
        OsTokens,
        clock.clone(),
        ServiceConfig {
            session_ttl: Duration::seconds(TTL),
            idle_timeout: Duration::seconds(IDLE),
            touch_interval: Duration::seconds(TOUCH),
            ..ServiceConfig::default()
        },
    );
    let mut model = Model {
        issued: Vec::new(),
        generations: [0; USERS.len()],
    };
    for step in steps {
        let now = clock.now();
        let pick =
            |i: usize, model: &Model| (!model.issued.is_empty()).then(|| i % model.issued.len());
        match step {
            Step::Login(user) => {
                let code = LoginCode::parse(&mock.mint_code(USERS[user], None)).unwrap();
                let outcome = service.login(&code).await.unwrap();
                model.issued.push(Issued {
                    token: outcome.token.expose().to_owned(),
                    user,
                    generation: model.generations[user],
                    expires_at: outcome.expires_at,
                    last_seen: now,
                    revoked: false,
                });
            }
            Step::Use(i) => {
                if let Some(i) = pick(i, &model) {
                    let live = model.live(i, now);
                    assert_eq!(
                        service.authenticate(&model.issued[i].token).await.is_ok(),
                        live
                    );
                    if live {
                        model.used(i, now);
                    }
                }
            }
            Step::Refresh(i) => {
                if let Some(i) = pick(i, &model) {
                    let live = model.live(i, now);
                    let answer = service.refresh(&model.issued[i].token).await;
                    assert_eq!(answer.is_ok(), live, "refresh of {i}: {answer:?}");
                    if let Ok(refreshed) = answer {
                        model.issued[i].revoked = true;
                        let (user, generation) = (model.issued[i].user, model.issued[i].generation);
                        model.issued.push(Issued {
                            token: refreshed.token.expose().to_owned(),
                            user,
                            generation,
                            expires_at: refreshed.expires_at,
                            last_seen: now,
                            revoked: false,
                        });
                    }
                }
            }
            Step::Logout(i) => {
                if let Some(i) = pick(i, &model) {
                    let live = model.live(i, now);
                    assert_eq!(service.logout(&model.issued[i].token).await.is_ok(), live);
                    if live {
                        model.issued[i].revoked = true;
                    }
                }
            }
            Step::Erase(i) => {
                if let Some(i) = pick(i, &model) {
                    let live = model.live(i, now);
                    assert_eq!(service.erase(&model.issued[i].token).await.is_ok(), live);
                    if live {
                        model.generations[model.issued[i].user] += 1;
                    }
                }
            }
            Step::Wait(secs) => {
                *clock.0.lock().unwrap() = now + Duration::seconds(secs);
            }
        }
        check_all(&service, &mut model, clock.now()).await;
    }
    // The purge removes exactly what is dead: every live token still works afterwards.
    service.purge_ended_sessions().await.unwrap();
    check_all(&service, &mut model, clock.now()).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn no_dead_token_works_and_every_live_one_does(steps in prop::collection::vec(step(), 1..40)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(steps));
    }
}
