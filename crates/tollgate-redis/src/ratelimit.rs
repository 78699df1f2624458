//! `RedisRateLimiter`: GCRA in a Lua script, on the Redis server's clock.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use smallvec::SmallVec;
use tollgate_core::BoxError;
use tollgate_ratelimit::{Check, Decision, QuotaState, RateLimitBackend, RuleKey, States};

use crate::client::{OnFailure, Redis, WarnClock};

static CHECK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("check.lua")));
static REFUND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("refund.lua")));

/// The future of a [`RedisRateLimiter`] check.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<Decision, BoxError>> + Send>>;

/// Rate limits in Redis, shared by every gateway replica: the same GCRA as
/// [`GovernorBackend`](tollgate_ratelimit::GovernorBackend) (a request's rules checked and
/// charged all or nothing, with limit, remaining and reset per rule), in one round trip per
/// request.
///
/// **One clock.** The script reads the Redis server's `TIME`, never a gateway's: replicas
/// whose clocks disagree cannot over-admit.
///
/// **Keys and Redis Cluster.** A rule's state is one string, its theoretical arrival time:
/// `{prefix}:rl:{k:<key id>}:<rule>[:<model>]` for the rules of one API key and
/// `{prefix}:rl:{m:<model>}:<rule>` for a model's rules shared by every caller. It expires
/// when the rule is full again. The hash tag (in braces) puts all of a key's rules in one
/// slot, so on a single node or for per-key rules the whole request is one atomic script.
/// When a request's rules fall in two slots (a per-key rule and a shared per-model rule), each
/// slot's script runs at once, and if any denies, the slots that charged are refunded.
///
/// **No over-admission, by compensation.** Each slot's charge is atomic and a request is
/// admitted only when every slot charged. At any moment each rule's state holds the charges of
/// every admitted request (plus, briefly, those of denied requests not yet refunded), so a
/// rule never admits more than its quota; a denied request's transient charge can only make
/// a concurrent request wait, never let one through.
///
/// ```no_run
/// use std::sync::Arc;
/// use tollgate_core::Rate;
/// use tollgate_ratelimit::{Check, Decision, RateLimitBackend, RuleKey, Scope};
/// use tollgate_redis::{OnFailure, Redis, RedisConfig};
///
/// # async fn run() -> Result<(), tollgate_core::BoxError> {
/// let redis = Redis::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let limits = redis.rate_limiter().on_failure(OnFailure::Open);
/// let key = RuleKey::new(Scope::KeyRequests, Some(Arc::from("key_1")), None);
/// let check = Check { key, rate: Rate::per_minute(60)?, cost: 1 };
/// assert!(matches!(limits.check(&[check]).await?, Decision::Allowed(_)));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRateLimiter {
    redis: Redis,
    on_failure: OnFailure,
    warned: Arc<WarnClock>,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("redis", &self.redis)
            .field("on_failure", &self.on_failure)
            .finish()
    }
}

impl Redis {
    /// The rate-limit backend on this connection (fails closed by default).
    pub fn rate_limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter {
            redis: self.clone(),
            on_failure: OnFailure::Closed,
            warned: Arc::default(),
        }
    }
}

impl RedisRateLimiter {
    /// What to do when Redis fails ([`OnFailure::Closed`] by default). Failing open admits
    /// the request with no rate-limit headers, since there is no state to report.
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }
}

/// One check, ready for the script.
struct Planned {
    key: String,
    /// The hash tag: checks with the same one go in the same script.
    tag: Range,
    /// Microseconds per unit.
    per: f64,
    cost: u64,
    burst: u64,
    limit: u64,
}

type Range = std::ops::Range<usize>;

impl Planned {
    fn new(prefix: &str, check: &Check) -> Self {
        let RuleKey {
            scope,
            key_id,
            model,
        } = &check.key;
        let mut key = String::with_capacity(64);
        key.push_str(prefix);
        key.push_str(":rl:{");
        let tag_start = key.len();
        match (key_id, model) {
            (Some(key_id), _) => {
                key.push_str("k:");
                key.push_str(key_id);
            }
            (None, Some(model)) => {
                key.push_str("m:");
                key.push_str(model);
            }
            (None, None) => key.push('g'),
        }
        let tag = tag_start..key.len();
        key.push_str("}:");
        key.push_str(scope.name());
        if let (Some(_), Some(model)) = (key_id, model) {
            key.push(':');
            key.push_str(model);
        }
        let rate = check.rate;
        let per = rate.period().as_secs_f64() * 1e6 / rate.amount().get() as f64;
        Planned {
            key,
            tag,
            per,
            cost: check.cost,
            burst: rate.burst().get(),
            limit: rate.amount().get(),
        }
    }

    fn tag(&self) -> &str {
        &self.key[self.tag.clone()]
    }
}

/// The checks of one script: indexes into the request's checks.
type Group = SmallVec<[usize; 2]>;

/// What one script said.
enum Outcome {
    /// Every check of the group was charged; their states, in group order.
    Allowed(SmallVec<[QuotaState; 2]>),
    /// The group's check at this position had no room; nothing was charged.
    Denied {
        position: usize,
        state: QuotaState,
        retry_after: Option<Duration>,
    },
}

impl RateLimitBackend for RedisRateLimiter {
    type Future = CheckFuture;

    fn check(&self, checks: &[Check]) -> Self::Future {
        let prefix = self.redis.config().prefix();
        let plan: SmallVec<[Planned; 2]> = checks
            .iter()
            .map(|check| Planned::new(prefix, check))
            .collect();
        let this = self.clone();
        Box::pin(async move {
            match this.charge(&plan).await {
                Ok(decision) => Ok(decision),
                Err(error) if this.on_failure == OnFailure::Open => {
                    this.redis
                        .note_failed_open("rate limits", &error, &this.warned);
                    Ok(Decision::Allowed(States::new()))
                }
                Err(error) => Err(error),
            }
        })
    }

    fn refund(&self, checks: &[Check]) {
        let prefix = self.redis.config().prefix();
        let plan: SmallVec<[Planned; 2]> = checks
            .iter()
            .map(|check| Planned::new(prefix, check))
            .collect();
        let groups = self.groups(&plan);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("rate-limit refund outside a Tokio runtime: not given back");
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            for group in &groups {
                if let Err(error) = this.give_back(&plan, group).await {
                    tracing::warn!(error = %error, "rate-limit refund failed");
                }
            }
        });
    }
}

impl RedisRateLimiter {
    /// The request's checks grouped by slot: one group on a single node; one per hash tag on
    /// a cluster.
    fn groups(&self, plan: &[Planned]) -> SmallVec<[Group; 2]> {
        let mut groups: SmallVec<[Group; 2]> = SmallVec::new();
        if !self.redis.connection.is_cluster() {
            groups.push((0..plan.len()).collect());
            return groups;
        }
        for (index, planned) in plan.iter().enumerate() {
            match groups
                .iter_mut()
                .find(|group| plan[group[0]].tag() == planned.tag())
            {
                Some(group) => group.push(index),
                None => groups.push(std::iter::once(index).collect()),
            }
        }
        groups
    }

    async fn charge(&self, plan: &[Planned]) -> Result<Decision, BoxError> {
        let groups = self.groups(plan);
        if let [group] = groups.as_slice() {
            return Ok(match self.run(plan, group).await? {
                Outcome::Allowed(states) => Decision::Allowed(states.into_iter().collect()),
                Outcome::Denied {
                    position,
                    state,
                    retry_after,
                } => Decision::Denied {
                    index: group[position],
                    state,
                    retry_after,
                },
            });
        }
        // Rules in several slots: every slot at once, then compensation.
        let outcomes =
            futures_util::future::join_all(groups.iter().map(|group| self.run(plan, group))).await;
        let mut states = vec![None; plan.len()];
        let mut denial: Option<Decision> = None;
        let mut failure = None;
        let mut charged: SmallVec<[&Group; 2]> = SmallVec::new();
        for (group, outcome) in groups.iter().zip(outcomes) {
            match outcome {
                Ok(Outcome::Allowed(group_states)) => {
                    for (&index, state) in group.iter().zip(group_states) {
                        states[index] = Some(state);
                    }
                    charged.push(group);
                }
                Ok(Outcome::Denied {
                    position,
                    state,
                    retry_after,
                }) => {
                    let index = group[position];
                    let earlier = matches!(denial, Some(Decision::Denied { index: other, .. }) if other < index);
                    if !earlier {
                        denial = Some(Decision::Denied {
                            index,
                            state,
                            retry_after,
                        });
                    }
                }
                Err(error) => failure = Some(error),
            }
        }
        let result = match (denial, failure) {
            (None, None) => return Ok(Decision::Allowed(states.into_iter().flatten().collect())),
            (Some(denial), _) => Ok(denial),
            (None, Some(error)) => Err(error),
        };
        for group in charged {
            if let Err(error) = self.give_back(plan, group).await {
                tracing::warn!(error = %error, "rate-limit compensation failed");
            }
        }
        result
    }

    /// One script: the group's checks, charged all or nothing.
    async fn run(&self, plan: &[Planned], group: &Group) -> Result<Outcome, BoxError> {
        let reply: Vec<i64> = self
            .redis
            .call(|mut connection| async move {
                let mut invocation = CHECK.prepare_invoke();
                for &index in group {
                    invocation.key(&plan[index].key);
                }
                for &index in group {
                    let planned = &plan[index];
                    invocation
                        .arg(planned.per)
                        .arg(planned.cost)
                        .arg(planned.burst);
                }
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        decode(&reply, plan, group)
    }

    async fn give_back(&self, plan: &[Planned], group: &Group) -> Result<(), BoxError> {
        self.redis
            .call(|mut connection| async move {
                let mut invocation = REFUND.prepare_invoke();
                for &index in group {
                    invocation.key(&plan[index].key);
                }
                for &index in group {
                    invocation.arg(plan[index].per).arg(plan[index].cost);
                }
                invocation.invoke_async::<i64>(&mut connection).await
            })
            .await
            .map(drop)
    }
}

fn micros(value: i64) -> Duration {
    Duration::from_micros(u64::try_from(value).unwrap_or(0))
}

fn units(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn decode(reply: &[i64], plan: &[Planned], group: &Group) -> Result<Outcome, BoxError> {
    let malformed = || BoxError::from(format!("unexpected rate-limit script reply {reply:?}"));
    match reply {
        [1, pairs @ ..] if pairs.len() == 2 * group.len() => Ok(Outcome::Allowed(
            group
                .iter()
                .zip(pairs.chunks_exact(2))
                .map(|(&index, pair)| QuotaState {
                    limit: plan[index].limit,
                    remaining: units(pair[0]).min(plan[index].burst),
                    reset: micros(pair[1]),
                })
                .collect(),
        )),
        [0, position, remaining, reset, wait] => {
            let position = usize::try_from(*position - 1).map_err(|_| malformed())?;
            let index = *group.get(position).ok_or_else(malformed)?;
            Ok(Outcome::Denied {
                position,
                state: QuotaState {
                    limit: plan[index].limit,
                    remaining: units(*remaining),
                    reset: micros(*reset),
                },
                retry_after: (*wait >= 0).then(|| micros(*wait)),
            })
        }
        _ => Err(malformed()),
    }
}
