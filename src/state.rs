//! The running configuration: everything a request needs, compiled from one `Config` and
//! swapped whole (`ArcSwap`) on reload, so a request runs start to end under the config it
//! began with. Building a new `State` from the previous one keeps what must survive a
//! reload: breaker state (per upstream and backend address), the token cache and the
//! response cache (when their settings did not change).

use std::{sync::Arc, time::Instant};

use crate::{
    auth::{JwtVerifier, TokenProvider, exchange::UsersTokenSource},
    cache::{ResponseCache, StoreError},
    config::Config,
    router::Router,
    upstream::Upstream,
};

#[derive(Debug)]
pub struct State {
    pub config: Arc<Config>,
    pub router: Router,
    pub upstreams: Vec<Arc<Upstream>>,
    /// Present when the config has an `auth` section.
    pub auth: Option<Arc<TokenProvider>>,
    pub cache: Arc<ResponseCache>,
}

impl State {
    /// Compiles `config`, carrying over from `previous` what a reload must keep.
    pub fn build(
        config: Config,
        origin: Instant,
        previous: Option<&State>,
    ) -> Result<State, StoreError> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|spec| {
                let before = previous.and_then(|p| p.upstream(&spec.name));
                Arc::new(Upstream::new(spec, origin, before.map(|u| &**u)))
            })
            .collect();
        let auth = match previous {
            Some(p) if p.config.auth == config.auth => p.auth.clone(),
            _ => config.auth.as_ref().map(|settings| {
                let verifier = JwtVerifier::new(
                    settings.secret.expose(),
                    &settings.algorithms,
                    settings.leeway,
                );
                Arc::new(TokenProvider::new(
                    settings.upstream.clone(),
                    verifier,
                    Arc::new(UsersTokenSource::new(settings.path.clone())),
                    settings.cache,
                ))
            }),
        };
        let cache = match previous {
            Some(p) if p.config.cache == config.cache => p.cache.clone(),
            _ => Arc::new(ResponseCache::new(&config.cache)?),
        };
        Ok(State {
            router: Router::new(&config.routes),
            upstreams,
            auth,
            cache,
            config: Arc::new(config),
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
