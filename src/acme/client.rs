//! One ACME account and one order at a time, with instant-acme (JWS, nonces, polling
//! are its work): the challenges published for the shards while the order is
//! pending, withdrawn when it ends; the certificate and its new key returned as one
//! PEM (chain, then key) for the state directory.

use super::challenges::{Challenges, Pending};
use super::store;
use crate::config::{AcmeConfig, ChallengeKind};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use std::time::Duration;

/// Why an order failed: each message names the vhosts (and, for a validation, the
/// name and the challenge).
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("ACME account: {0}")]
    Account(String),
    #[error("{names}: the ACME server refused or could not be reached: {error}")]
    Server { names: String, error: String },
    #[error("{names}: the ACME server offers no {challenge} challenge for {name}")]
    NoChallenge {
        names: String,
        name: String,
        challenge: &'static str,
    },
    #[error("{names}: the {challenge} challenge for {name} failed: {detail}")]
    Validation {
        names: String,
        name: String,
        challenge: &'static str,
        detail: String,
    },
    #[error("{names}: the ACME server asks to validate {name}, which was not ordered")]
    Unasked { names: String, name: String },
    #[error("{names}: the order did not become ready: {status}")]
    Order { names: String, status: String },
    #[error("{names}: the certificate request cannot be made: {reason}")]
    Csr { names: String, reason: String },
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// How long one order may take, polling included: a validation that does not end
/// in this time is a failure, tried again later.
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

/// How long the HTTP-01 tokens are shared before the server is told to look: longer
/// than the second in which every host sharing `state_dir` reads them.
const SHARED_SETTLE: Duration = Duration::from_millis(1500);

fn policy() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(ORDER_TIMEOUT)
}

/// An error and its causes, outermost first (`client error (Connect): tcp connect
/// error: Connection refused (os error 111)`): instant-acme's own message of a
/// transport error says only which step failed, its sources say why.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The account in `state_dir`, or a new one saved there.
pub async fn account(cfg: &AcmeConfig) -> Result<Account, OrderError> {
    let fail =
        |e: instant_acme::Error| OrderError::Account(format!("{}: {}", cfg.directory, chain(&e)));
    let builder = || match &cfg.ca_bundle {
        Some(pem) => Account::builder_with_root(pem),
        None => Account::builder(),
    };
    // An account of another directory (staging's, kept after a switch to
    // production) would go on ordering from that directory.
    if let Some(made) = store::account_directory(&cfg.state_dir) {
        if made != cfg.directory {
            return Err(OrderError::Account(format!(
                "{}: made with directory {made}, not {}: give this directory a new, \
                 empty state_dir",
                cfg.state_dir.join("account.json").display(),
                cfg.directory
            )));
        }
    }
    if let Some(creds) = store::load_account(&cfg.state_dir)? {
        return builder()
            .map_err(fail)?
            .from_credentials(creds)
            .await
            .map_err(fail);
    }
    let contact: Vec<&str> = cfg.contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, creds) = builder()
        .map_err(fail)?
        .create(&new, cfg.directory.clone(), None)
        .await
        .map_err(fail)?;
    store::save_account(&cfg.state_dir, &creds)?;
    tracing::info!(directory = %cfg.directory, id = account.id(), "ACME account created");
    Ok(account)
}

/// Order a certificate for `names`, answering `kind` challenges through
/// `challenges`: the PEM to store (chain, then key).
/// HTTP-01 tokens are also written to `state_dir` for the hosts sharing it.
pub async fn order(
    account: &Account,
    names: &[String],
    cfg: &AcmeConfig,
    challenges: &Challenges,
) -> Result<String, OrderError> {
    let mut shared = Vec::new();
    let result = run(account, names, cfg, challenges, &mut shared).await;
    challenges.set(Pending::default());
    for token in &shared {
        store::unshare_token(&cfg.state_dir, token);
    }
    result
}

async fn run(
    account: &Account,
    names: &[String],
    cfg: &AcmeConfig,
    challenges: &Challenges,
    shared: &mut Vec<String>,
) -> Result<String, OrderError> {
    let kind = cfg.challenge;
    let set = names.join(",");
    let server = |e: instant_acme::Error| OrderError::Server {
        names: set.clone(),
        error: chain(&e),
    };
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(server)?;
    let pending = prepare(&mut order, names, &set, cfg, shared).await?;
    // Published before the server is told to look, here at once and on the hosts
    // sharing `state_dir` within their next read of it.
    challenges.set(pending);
    if !shared.is_empty() {
        tokio::time::sleep(SHARED_SETTLE).await;
    }
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.map_err(server)?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        if let Some(mut c) = authz.challenge(challenge_type(kind)) {
            c.set_ready().await.map_err(server)?;
        }
    }
    // An order whose validation failed comes back as an error or as `invalid`: the
    // failed challenge says which name, and why.
    match order.poll_ready(&policy()).await {
        Ok(OrderStatus::Ready) => {}
        Ok(status) => {
            let status = format!("{status:?}").to_lowercase();
            return Err(failure(&mut order, &set, kind, status).await);
        }
        Err(e) => return Err(failure(&mut order, &set, kind, server(e).to_string()).await),
    }
    finalize(&mut order, names, &set).await
}

/// The answer to each pending authorization's challenge: HTTP-01 tokens (also
/// written to `state_dir`, listed in `shared`), or TLS-ALPN-01 certificates.
async fn prepare(
    order: &mut instant_acme::Order,
    names: &[String],
    set: &str,
    cfg: &AcmeConfig,
    shared: &mut Vec<String>,
) -> Result<Pending, OrderError> {
    let kind = cfg.challenge;
    let mut pending = Pending::default();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.map_err(|e| OrderError::Server {
            names: set.to_owned(),
            error: chain(&e),
        })?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        let name = authz.identifier().to_string();
        // A challenge certificate is made for the names ordered, never for one the
        // server slipped in.
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            return Err(OrderError::Unasked {
                names: set.to_owned(),
                name,
            });
        }
        let Some(challenge) = authz.challenge(challenge_type(kind)) else {
            return Err(OrderError::NoChallenge {
                names: set.to_owned(),
                name,
                challenge: kind.as_str(),
            });
        };
        let key_auth = challenge.key_authorization();
        match kind {
            ChallengeKind::Http01 => {
                // Refused unless base64url: it names a file, and is served.
                store::share_token(&cfg.state_dir, &challenge.token, key_auth.as_str())?;
                shared.push(challenge.token.clone());
                pending.add_http(&challenge.token, key_auth.as_str());
            }
            ChallengeKind::TlsAlpn01 => {
                let key =
                    alpn_certificate(&name, key_auth.digest().as_ref()).map_err(|reason| {
                        OrderError::Csr {
                            names: set.to_owned(),
                            reason,
                        }
                    })?;
                pending.add_alpn(&name, key);
            }
        }
    }
    Ok(pending)
}

/// Why an order did not become ready: the first failed challenge, by name; else
/// `otherwise` (its status, or the server's error).
async fn failure(
    order: &mut instant_acme::Order,
    set: &str,
    kind: ChallengeKind,
    otherwise: String,
) -> OrderError {
    let mut authzs = order.authorizations();
    while let Some(Ok(authz)) = authzs.next().await {
        let failed = authz
            .challenges
            .iter()
            .find(|c| c.r#type == challenge_type(kind) && c.error.is_some());
        if let Some(c) = failed {
            let detail = c.error.as_ref().map(|p| p.to_string()).unwrap_or_default();
            return OrderError::Validation {
                names: set.to_owned(),
                name: authz.identifier().to_string(),
                challenge: kind.as_str(),
                detail,
            };
        }
    }
    OrderError::Order {
        names: set.to_owned(),
        status: otherwise,
    }
}

/// A new ECDSA P-256 key and its certificate request, then the chain.
async fn finalize(
    order: &mut instant_acme::Order,
    names: &[String],
    set: &str,
) -> Result<String, OrderError> {
    let csr_fail = |e: rcgen::Error| OrderError::Csr {
        names: set.to_owned(),
        reason: e.to_string(),
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(csr_fail)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(csr_fail)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(csr_fail)?;
    let server = |e: instant_acme::Error| OrderError::Server {
        names: set.to_owned(),
        error: e.to_string(),
    };
    order.finalize_csr(csr.der()).await.map_err(server)?;
    let chain = order.poll_certificate(&policy()).await.map_err(server)?;
    let mut pem = chain;
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem.push_str(&key.serialize_pem());
    Ok(pem)
}

fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    }
}

/// The TLS-ALPN-01 certificate for `name`: self-signed, carrying the key
/// authorization's digest in the critical acmeIdentifier extension (RFC 8737).
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_error_is_told_with_its_causes() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            super::chain(&Outer(refused)),
            "client error (Connect): refused"
        );
    }
}
