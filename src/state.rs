//! The running configuration: everything a request needs, compiled from one `Config` and
//! swapped whole (`ArcSwap`) on reload, so a request runs start to end under the config it
//! began with. Building a new `State` from the previous one keeps what must survive a
//! reload: breaker state (per upstream and backend address), the token cache and the
//! response cache (when their settings did not change), and rate-limit counts (per policy,
//! while its key and store stay the same).

use std::{sync::Arc, time::Instant};

use crate::{
    auth::{JwtVerifier, TokenProvider, exchange::UsersTokenSource},
    cache::{ResponseCache, StoreError},
    config::{ConcurrencyLimit, Config},
    events::EventBus,
    ratelimit::RateLimits,
    router::Router,
    upstream::{
        Upstream,
        bulkhead::{self, Limiter},
    },
};

#[derive(Debug)]
pub struct State {
    pub config: Arc<Config>,
    pub router: Router,
    pub upstreams: Vec<Arc<Upstream>>,
    /// Present when the config has an `auth` section.
    pub auth: Option<Arc<TokenProvider>>,
    /// The token exchange's concurrency limit, inherited by every next `State` (its
    /// limits change in place) so that exchanges in flight stay counted across reloads.
    pub exchange_limit: Arc<Limiter>,
    pub cache: Arc<ResponseCache>,
    /// Rate-limit policies and exchange limits; their counts carry over reloads.
    pub rate_limits: RateLimits,
    /// The gateway's event bus (breaker transitions are published on it), the same for
    /// every `State` of one gateway.
    pub events: Arc<EventBus>,
}

impl State {
    /// Compiles `config`, carrying over from `previous` what a reload must keep.
    pub fn build(
        config: Config,
        origin: Instant,
        previous: Option<&State>,
        events: &Arc<EventBus>,
    ) -> Result<State, StoreError> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|spec| {
                let before = previous.and_then(|p| p.upstream(&spec.name));
                Arc::new(Upstream::new(spec, origin, before.map(|u| &**u), events))
            })
            .collect();
        let limit = config
            .auth
            .as_ref()
            .map_or(ConcurrencyLimit::UNLIMITED, |a| a.exchange_limit);
        let exchange_limit = match previous {
            Some(p) => {
                p.exchange_limit.bulkhead().set_limit(limit);
                p.exchange_limit.clone()
            }
            None => Arc::new(Limiter::new(limit)),
        };
        if let Some(auth) = &config.auth {
            bulkhead::init_shed_series(&auth.upstream, "token_exchange", limit);
        }
        let same_provider = |p: &State| match (&p.config.auth, &config.auth) {
            (Some(before), Some(now)) => before.same_provider(now),
            (before, now) => before.is_none() && now.is_none(),
        };
        let auth = match previous {
            Some(p) if same_provider(p) => p.auth.clone(),
            _ => config.auth.as_ref().map(|settings| {
                let verifier = JwtVerifier::new(
                    settings.secret.expose(),
                    &settings.algorithms,
                    settings.leeway,
                );
                Arc::new(TokenProvider::new(
                    settings.upstream.clone(),
                    verifier,
                    Arc::new(UsersTokenSource::new(
                        settings.path.clone(),
                        exchange_limit.clone(),
                    )),
                    settings.cache,
                ))
            }),
        };
        let cache = match previous {
            Some(p) if p.config.cache == config.cache => p.cache.clone(),
            _ => Arc::new(ResponseCache::new(&config.cache)?),
        };
        let rate_limits = RateLimits::new(&config, previous.map(|p| &p.rate_limits));
        Ok(State {
            rate_limits,
            router: Router::new(&config),
            upstreams,
            auth,
            exchange_limit,
            cache,
            config: Arc::new(config),
            events: events.clone(),
        })
    }

    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| &*u.name == name)
    }

    /// The upstream token exchanges go through.
    pub fn token_upstream(&self) -> Option<&Arc<Upstream>> {
        self.upstream(&self.config.auth.as_ref()?.upstream)
    }
}
