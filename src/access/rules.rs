//! The decision point: per-app rules that combine checkers into one outcome for a connect,
//! publish or play.
//!
//! Owns: which checkers an app's action needs, their combination (every group must allow; a
//! group `a|b` allows when one of its checkers does), the delay of denials, and the counts of
//! verdicts. Must never: allow when a listed checker is not configured (refused at start), or
//! answer a denial at once (a guesser waits [`DENY_DELAY`] per try; others do not wait for it).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Action, Checker, Notice, Outcome, Request};
use crate::config::{AccessConfig, AppAccess};
use crate::hub::lock;

/// How long a denied client waits for its answer: brute-forcing tokens costs time, and the
/// wait is this connection's alone.
pub const DENY_DELAY: Duration = Duration::from_millis(500);

/// Sends notifications (`on_publish_done`, ...) after the fact; never waits.
pub trait Notifier: Send + Sync {
    fn notify(&self, notice: Notice, request: &Request, extra: &[(&str, String)]);
}

/// The checkers one action needs: every group must allow; within a group, one checker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Needs(Vec<Vec<&'static str>>);

#[derive(Debug, Clone, Default)]
struct AppRules {
    connect: Needs,
    publish: Needs,
    play: Needs,
    takeover: bool,
}

impl AppRules {
    fn needs(&self, action: Action) -> &Needs {
        match action {
            Action::Connect => &self.connect,
            Action::Publish => &self.publish,
            Action::Play => &self.play,
        }
    }
}

/// Verdicts by (action, checker, result); `checker` "none" for actions without rules.
type Counts = BTreeMap<(Action, &'static str, &'static str), u64>;

pub struct Access {
    checkers: HashMap<&'static str, Arc<dyn Checker>>,
    default: AppRules,
    apps: HashMap<String, AppRules>,
    notifier: Option<Arc<dyn Notifier>>,
    counts: Mutex<Counts>,
    denied: AtomicU64,
    deny_delay: Duration,
}

impl Access {
    /// The rules of `config` over `checkers` (the configured ones, by name). A rule naming a
    /// checker that is not configured is an error naming its key.
    pub fn new(
        config: &AccessConfig,
        checkers: Vec<Arc<dyn Checker>>,
        notifier: Option<Arc<dyn Notifier>>,
    ) -> Result<Access, String> {
        let checkers: HashMap<&'static str, Arc<dyn Checker>> =
            checkers.into_iter().map(|c| (c.name(), c)).collect();
        let rules = |prefix: &str, app: &AppAccess| -> Result<AppRules, String> {
            let needs = |action: &str, list: &[String]| -> Result<Needs, String> {
                list.iter()
                    .map(|entry| {
                        entry
                            .split('|')
                            .map(str::trim)
                            .map(|name| {
                                checkers.get_key_value(name).map(|(k, _)| *k).ok_or_else(|| {
                                    format!("{prefix}.{action}: {name:?} is not configured (see its section)")
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Needs)
            };
            Ok(AppRules {
                connect: needs("connect", &app.connect)?,
                publish: needs("publish", &app.publish)?,
                play: needs("play", &app.play)?,
                takeover: app.takeover,
            })
        };
        let default = rules("access.default", &config.default)?;
        let apps = config
            .apps
            .iter()
            .map(|(app, rules_of)| {
                Ok((app.clone(), rules(&format!("access.apps.{app}"), rules_of)?))
            })
            .collect::<Result<HashMap<_, _>, String>>()?;
        Ok(Access {
            checkers,
            default,
            apps,
            notifier,
            counts: Mutex::new(Counts::new()),
            denied: AtomicU64::new(0),
            deny_delay: DENY_DELAY,
        })
    }

    /// No rules and no checkers: every client is let in (a node without `[access]`).
    pub fn open() -> Access {
        Access {
            checkers: HashMap::new(),
            default: AppRules::default(),
            apps: HashMap::new(),
            notifier: None,
            counts: Mutex::new(Counts::new()),
            denied: AtomicU64::new(0),
            deny_delay: DENY_DELAY,
        }
    }

    /// With a shorter denial delay (tests).
    pub fn with_deny_delay(mut self, delay: Duration) -> Access {
        self.deny_delay = delay;
        self
    }

    /// The rules of `app`: its own (exact name, else case-insensitive: names set from the
    /// environment are lower case), else the default ones.
    fn rules_of(&self, app: &str) -> &AppRules {
        self.apps
            .get(app)
            .or_else(|| {
                self.apps
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(app))
                    .map(|(_, rules)| rules)
            })
            .unwrap_or(&self.default)
    }

    /// Whether `action` on `app` is decided by checkers (else it is open).
    pub fn has_rules(&self, app: &str, action: Action) -> bool {
        !self.rules_of(app).needs(action).0.is_empty()
    }

    /// Whether an authorized publisher of a live stream of `app` takes it over: publish
    /// rules are on and `takeover` is set.
    pub fn takeover(&self, app: &str) -> bool {
        let rules = self.rules_of(app);
        rules.takeover && !rules.publish.0.is_empty()
    }

    /// Decides `request`. A denial comes after [`DENY_DELAY`].
    pub async fn decide(&self, request: &Request) -> Outcome {
        let outcome = self.evaluate(request).await;
        if matches!(outcome, Outcome::Deny(_)) {
            self.denied.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.deny_delay).await;
        }
        outcome
    }

    async fn evaluate(&self, request: &Request) -> Outcome {
        let action = request.action;
        let needs = &self.rules_of(&request.app).needs(action).0;
        if needs.is_empty() {
            self.count(action, "none", "allow");
            return Outcome::Allow;
        }
        for group in needs {
            let mut reasons = Vec::new();
            let mut allowed = false;
            for name in group {
                let Some(checker) = self.checkers.get(name) else {
                    // `new` refuses rules with unconfigured checkers; fail closed regardless.
                    return Outcome::Deny(format!("{name} is not configured"));
                };
                match checker.check(request).await {
                    Outcome::Allow => {
                        self.count(action, name, "allow");
                        allowed = true;
                        break;
                    }
                    Outcome::Redirect(to) => {
                        self.count(action, name, "redirect");
                        return Outcome::Redirect(to);
                    }
                    Outcome::Deny(why) => {
                        self.count(action, name, "deny");
                        reasons.push(format!("{name}: {why}"));
                    }
                }
            }
            if !allowed {
                return Outcome::Deny(reasons.join("; "));
            }
        }
        Outcome::Allow
    }

    fn count(&self, action: Action, checker: &'static str, result: &'static str) {
        *lock(&self.counts)
            .entry((action, checker, result))
            .or_default() += 1;
    }

    /// Verdicts so far, by (action, checker, result).
    pub fn counts(&self) -> Vec<((Action, &'static str, &'static str), u64)> {
        lock(&self.counts).iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Tells the notification hooks (if any) that something happened.
    pub fn notify(&self, notice: Notice, request: &Request, extra: &[(&str, String)]) {
        if let Some(notifier) = &self.notifier {
            notifier.notify(notice, request, extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use async_trait::async_trait;

    use super::*;

    /// A checker that answers what it was told and counts its calls.
    struct Fixed {
        name: &'static str,
        outcome: Outcome,
        calls: AtomicU64,
    }

    #[async_trait]
    impl Checker for Fixed {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn check(&self, _request: &Request) -> Outcome {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.outcome.clone()
        }
    }

    fn fixed(name: &'static str, outcome: Outcome) -> Arc<Fixed> {
        Arc::new(Fixed {
            name,
            outcome,
            calls: AtomicU64::new(0),
        })
    }

    fn request(app: &str, action: Action) -> Request {
        Request {
            node_id: "n".into(),
            role: "origin",
            action,
            app: app.into(),
            stream: "cam".into(),
            key: format!("{app}/cam"),
            query: vec![],
            tc_url: String::new(),
            client: SocketAddr::from(([127, 0, 0, 1], 5000)),
            flash_ver: String::new(),
            swf_url: String::new(),
            page_url: String::new(),
            conn_id: 1,
        }
    }

    fn config(toml_text: &str) -> AccessConfig {
        let c = crate::config::Config::load_from(None, &[]).expect("defaults");
        let mut access = c.access;
        let parsed: toml::Table = toml::from_str(toml_text).expect("toml");
        for (app, rules) in parsed {
            let rules: AppAccess = rules.try_into().expect("rules");
            if app == "default" {
                access.default = rules;
            } else {
                access.apps.insert(app, rules);
            }
        }
        access
    }

    #[tokio::test(start_paused = true)]
    async fn groups_are_anded_and_alternatives_ored() {
        let token = fixed("token", Outcome::Deny("bad signature".into()));
        let jwt = fixed("jwt", Outcome::Allow);
        let cidr = fixed("cidr", Outcome::Deny("address not allowed".into()));
        let checkers: Vec<Arc<dyn Checker>> = vec![token.clone(), jwt.clone(), cidr.clone()];
        let access = Access::new(
            &config(
                "[live]\npublish = [\"token|jwt\"]\nplay = [\"jwt\", \"cidr\"]\n[default]\nplay = [\"token\"]\n",
            ),
            checkers,
            None,
        )
        .expect("rules");
        assert_eq!(
            access.decide(&request("live", Action::Publish)).await,
            Outcome::Allow,
            "token denies, jwt allows: the group allows"
        );
        let denied = access.decide(&request("live", Action::Play)).await;
        assert_eq!(denied, Outcome::Deny("cidr: address not allowed".into()));
        assert_eq!(
            access.decide(&request("live", Action::Connect)).await,
            Outcome::Allow,
            "no connect rules: open"
        );
        assert_eq!(
            access.decide(&request("other", Action::Play)).await,
            Outcome::Deny("token: bad signature".into()),
            "apps without rules of their own get the default"
        );
        assert_eq!(
            access.decide(&request("LIVE", Action::Publish)).await,
            Outcome::Allow,
            "app names match case-insensitively as a fallback"
        );
        assert!(access.has_rules("live", Action::Publish));
        assert!(!access.has_rules("live", Action::Connect));
        assert!(access.takeover("live"));
        assert!(!access.takeover("other"), "no publish rules: no takeover");
        let counts: BTreeMap<_, _> = access.counts().into_iter().collect();
        assert_eq!(counts[&(Action::Publish, "jwt", "allow")], 2);
        assert_eq!(counts[&(Action::Play, "cidr", "deny")], 1);
        assert_eq!(counts[&(Action::Connect, "none", "allow")], 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_redirect_ends_the_decision_and_a_denial_waits() {
        let hook = fixed(
            "hook",
            Outcome::Redirect("rtmp://elsewhere/live/cam".into()),
        );
        let cidr = fixed("cidr", Outcome::Allow);
        let access = Access::new(
            &config("[live]\nplay = [\"hook\", \"cidr\"]\npublish = [\"hook|cidr\"]\n"),
            vec![hook.clone(), cidr.clone()],
            None,
        )
        .expect("rules");
        assert_eq!(
            access.decide(&request("live", Action::Play)).await,
            Outcome::Redirect("rtmp://elsewhere/live/cam".into())
        );
        assert_eq!(
            cidr.calls.load(Ordering::Relaxed),
            0,
            "nothing after a redirect"
        );

        let deny = fixed("token", Outcome::Deny("expired".into()));
        let access =
            Access::new(&config("[live]\nplay = [\"token\"]\n"), vec![deny], None).expect("rules");
        let started = tokio::time::Instant::now();
        let outcome = access.decide(&request("live", Action::Play)).await;
        assert!(matches!(outcome, Outcome::Deny(_)));
        assert!(started.elapsed() >= DENY_DELAY);
    }

    #[test]
    fn a_rule_naming_an_unconfigured_checker_is_refused() {
        let err = Access::new(&config("[live]\npublish = [\"jwt\"]\n"), vec![], None)
            .err()
            .unwrap_or_default();
        assert_eq!(
            err,
            "access.apps.live.publish: \"jwt\" is not configured (see its section)"
        );
    }
}
