//! Fetching from Marathon: `/v2/apps?embed=apps.tasks` from the first URL that answers,
//! following a standby's redirect to the leader, with basic or DC/OS token auth.

use crate::config::MarathonConfig;
use std::time::Duration;

/// The largest apps body accepted (a 1,000-app cluster is a few MiB).
const MAX_BODY: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Failed { url: String, reason: String },
    #[error("no Marathon URL configured")]
    NoUrl,
}

pub struct Client {
    agent: ureq::Agent,
    urls: Vec<String>,
    auth: Option<String>,
    /// The URL that answered last: tried first next time.
    preferred: usize,
}

impl Client {
    pub fn new(cfg: &MarathonConfig) -> anyhow::Result<Client> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .max_redirects(4)
            .build()
            .into();
        Ok(Client {
            agent,
            urls: cfg.urls.clone(),
            auth: auth_header(cfg)?,
            preferred: 0,
        })
    }

    /// The apps with their tasks, as raw JSON, from the first URL that answers 200.
    pub fn fetch_apps(&mut self) -> Result<Vec<u8>, FetchError> {
        let n = self.urls.len();
        let mut last = FetchError::NoUrl;
        for k in 0..n {
            let i = (self.preferred + k) % n;
            let url = format!("{}/v2/apps?embed=apps.tasks", self.urls[i]);
            match self.get(&url) {
                Ok(body) => {
                    self.preferred = i;
                    return Ok(body);
                }
                Err(reason) => last = FetchError::Failed { url, reason },
            }
        }
        Err(last)
    }

    fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut req = self.agent.get(url).header("Accept", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().map_err(|e| e.to_string())?;
        resp.body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| e.to_string())
    }
}

/// `Authorization` from the config: a DC/OS token file, or basic credentials.
pub fn auth_header(cfg: &MarathonConfig) -> anyhow::Result<Option<String>> {
    use base64::Engine;
    let encode = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    if let Some(path) = &cfg.token_file {
        let token = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("marathon token_file {}: {e}", path.display()))?;
        return Ok(Some(format!("token={}", token.trim())));
    }
    let pair = match (&cfg.credentials_file, &cfg.username) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("marathon credentials_file {}: {e}", path.display()))?
            .trim()
            .to_owned(),
        (None, Some(user)) => format!("{user}:{}", cfg.password.as_deref().unwrap_or("")),
        (None, None) => return Ok(None),
    };
    Ok(Some(format!("Basic {}", encode(pair.as_bytes()))))
}
